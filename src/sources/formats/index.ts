// The log-format registry: one row per format, each defined in its own file as data (a LogFormat).
// `[[watch]] format = "..."`, `relaygate run --stdin-format` and `relaygate test-log --format` name a row here;
// test/sources/formats.test.ts walks the registry and demands a sample file with hostile samples, a sample
// for every pattern and a clean lint for each row, and README's "Log formats" section listing it.
//
// Security: a format is trusted code, not configuration: only the rows below exist, and an unknown name is a
// configuration error (never a fallback to some permissive default).

import { RelaygateError } from '../../errors.ts';
import type { LogFormat } from './types.ts';
import { dovecot } from './dovecot.ts';
import { courier } from './courier.ts';
import { uwImap } from './uw-imap.ts';
import { qpopper } from './qpopper.ts';
import { cyrus } from './cyrus.ts';
import { vmPop3d } from './vm-pop3d.ts';
import { popa3d } from './popa3d.ts';
import { perdition } from './perdition.ts';
import { solidPop3d } from './solid-pop3d.ts';
import { teapop } from './teapop.ts';
import { gnuPop3d } from './gnu-pop3d.ts';
import { vpopmail } from './vpopmail.ts';
import { cucipop } from './cucipop.ts';

export type { LogFormat, LogPattern, PatternKind } from './types.ts';

const ROWS: readonly LogFormat[] = [dovecot, courier, uwImap, qpopper, cyrus, vmPop3d, popa3d, perdition, solidPop3d, teapop, gnuPop3d, vpopmail, cucipop];

/** Format name (as operators write it in the configuration) → format. */
export const FORMATS: Record<string, LogFormat> = Object.freeze(Object.fromEntries(ROWS.map((f) => [f.name, f])));

/** The format called `name`; throws RG_ERR_CONFIG_INVALID naming every known format otherwise. */
export function getFormat(name: string): LogFormat {
  if (!Object.hasOwn(FORMATS, name)) {
    throw new RelaygateError('RG_ERR_CONFIG_INVALID', `unknown log format ${JSON.stringify(name)}; known formats: ${Object.keys(FORMATS).join(', ')}`);
  }
  return FORMATS[name]!;
}
