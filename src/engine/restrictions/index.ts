// The restriction registry: one row per restriction, in README order. Adding one is a new file here plus
// one row; test/engine/engine.test.ts checks every row is documented in README and covered by a golden
// transcript.
// Security: only names in this registry can appear in a restriction list; anything else is refused when
// the engine is built.

import type { RestrictionDef } from '../restriction.ts';
import { checkClientAccess } from './check-client-access.ts';
import { checkSenderAccess } from './check-sender-access.ts';
import { defer } from './defer.ts';
import { deferIfPermit } from './defer-if-permit.ts';
import { deferUnauthDestination } from './defer-unauth-destination.ts';
import { permit } from './permit.ts';
import { permitAuthDestination } from './permit-auth-destination.ts';
import { permitMynetworks } from './permit-mynetworks.ts';
import { permitPopBeforeSmtp } from './permit-pop-before-smtp.ts';
import { permitSaslAuthenticated } from './permit-sasl-authenticated.ts';
import { reject } from './reject.ts';
import { rejectAuthenticatedSenderLoginMismatch } from './reject-authenticated-sender-login-mismatch.ts';
import { rejectSenderLoginMismatch } from './reject-sender-login-mismatch.ts';
import { rejectUnauthDestination } from './reject-unauth-destination.ts';
import { rejectUnauthenticatedSenderLoginMismatch } from './reject-unauthenticated-sender-login-mismatch.ts';
import { warnIfReject } from './warn-if-reject.ts';

export const RESTRICTIONS: readonly RestrictionDef[] = [
  permitMynetworks,
  permitSaslAuthenticated,
  permitPopBeforeSmtp,
  rejectUnauthDestination,
  deferUnauthDestination,
  permitAuthDestination,
  checkClientAccess,
  checkSenderAccess,
  rejectSenderLoginMismatch,
  rejectAuthenticatedSenderLoginMismatch,
  rejectUnauthenticatedSenderLoginMismatch,
  permit,
  reject,
  defer,
  deferIfPermit,
  warnIfReject,
];

export const RESTRICTIONS_BY_NAME: ReadonlyMap<string, RestrictionDef> = new Map(RESTRICTIONS.map((r) => [r.name, r]));

/** Postfix restrictions relaygate does not implement, so an operator gets a precise message. */
export const POSTFIX_ONLY = new Set([
  'check_policy_service',
  'check_recipient_access',
  'check_helo_access',
  'check_sasl_access',
  'check_ccert_access',
  'reject_rbl_client',
  'reject_rhsbl_client',
  'reject_rhsbl_sender',
  'reject_unknown_client_hostname',
  'reject_unknown_reverse_client_hostname',
  'reject_unknown_sender_domain',
  'reject_unknown_recipient_domain',
  'reject_non_fqdn_sender',
  'reject_non_fqdn_recipient',
  'reject_unlisted_sender',
  'reject_unlisted_recipient',
  'reject_unverified_recipient',
  'reject_known_sender_login_mismatch',
  'permit_tls_clientcerts',
  'permit_tls_all_clientcerts',
  'permit_mx_backup',
  'reject_unauth_pipelining',
  'defer_if_reject',
  'check_relay_domains',
]);
