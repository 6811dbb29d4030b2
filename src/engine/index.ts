// engine/: the face of the decision engine — createEngine(), its types, the restriction registry and the
// address parser front ends may want for their own validation.
// Security: front ends pass requests in and replies out; every relay decision is made behind this face.
export { createEngine } from './engine.ts';
export type { Decision, DecisionRequest, Engine, EngineOptions, GrantLookup, Stage, TraceEntry, TraceResult } from './types.ts';
export { RESTRICTIONS } from './restrictions/index.ts';
export type { RestrictionDef } from './restriction.ts';
export { parseAddress, type ParsedAddress } from './address.ts';
