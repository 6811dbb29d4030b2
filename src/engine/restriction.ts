// The shape of one restriction (one registry row, one file under restrictions/): its Postfix name, whether
// it takes a `type:name` table, the line README shows, and how it is compiled into a step function.
// A step answers an Outcome synchronously when it can (no table, no store) so the common list costs one
// await at most; it throws LookupFailure (or anything) when a lookup fails, and the engine defers.
// Security: a restriction sees only the RequestContext; it cannot open files or sockets.

import type { LookupTable } from '../tables/index.ts';
import type { EngineEnv, RequestContext } from './context.ts';
import type { Outcome } from './outcome.ts';

export type StepFn = (ctx: RequestContext) => Outcome | Promise<Outcome>;

export interface CompileArgs {
  readonly env: EngineEnv;
  /** the opened table, for restrictions with `takesTable` */
  readonly table: LookupTable | undefined;
}

export interface RestrictionDef {
  /** the Postfix name, as written in the configuration */
  readonly name: string;
  readonly takesTable: boolean;
  /** one line for README's restriction table (kept in step by test/engine/engine.test.ts) */
  readonly doc: string;
  /** a working refusal for Postfix's "relay list must be able to reject" rule */
  readonly refusesRelay?: boolean;
  /** does nothing without sender_login_maps */
  readonly needsSenderLoginMaps?: boolean;
  compile(args: CompileArgs): StepFn;
}
