// frontends/smtp/: the SMTP AUTH gateway — smtp-server in front (AUTH, relay decision by the engine at
// MAIL/RCPT, smuggling-safe DATA), nodemailer's SMTPConnection pool behind (before-queue forwarding to the
// relayhost). gateway.ts is the module; the other files are its parts, exported for tests and tools.
// Security: see gateway.ts. Nothing here decides relaying; the engine does.
export { startGateway, aLabelAddress, type Gateway, type GatewayOptions, type ListenerAddress, type ListenRole } from './gateway.ts';
export { gatewayConfigProblems, parseEndpoint, endpointText, type Endpoint } from './endpoints.ts';
export { LineEndingGuard, receivedHeader, rfc5322Date, type BareNewlineMode, type ReceivedFields } from './data.ts';
export { UpstreamPool, parseReply, queueIdOf, xtext, UNAVAILABLE, type ForwardJob, type ForwardRequest, type ForwardResult, type UpstreamOptions } from './upstream.ts';
export { loadTlsMaterial, type TlsMaterial } from './tls.ts';
export { GatewayConnection, GatewayServer, type ConnectionHooks } from './connection.ts';
export { startConfiguredGateway, STOP_GRACE_MS, type RunningGateway } from './daemon.ts';
