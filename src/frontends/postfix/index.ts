// frontends/postfix/: Postfix asks relaygate — the policy delegation service (check_policy_service) and the
// socketmap server (socketmap: tables); the table export lives in src/export. Thin adapters: protocol →
// engine or table → protocol. README "Using relaygate with Postfix"; snippets in contrib/postfix/.
// Security: see policy.ts, socketmap.ts and listen.ts (who may connect). Nothing here decides relaying.
export { startPolicyService, PolicyRequestParser, trustHeader, DEFAULT_TEMPFAIL_ACTION, type PolicyService, type PolicyServiceOptions, type PolicyAttributes } from './policy.ts';
export { startSocketmap, NetstringParser, netstring, MAX_NETSTRING, type SocketmapServer, type SocketmapOptions } from './socketmap.ts';
export { parseListen, listenText, listenStream, parseSocketMode, isRemoteListen, MAX_CONNECTIONS, type ListenSpec, type StreamListener } from './listen.ts';
export { postfixFrontendProblems, policyEngineOptions, policyRestrictionProblems, tempfailActionProblem } from './config.ts';
export { startPostfixFrontends, type RunningPostfixFrontends } from './daemon.ts';
