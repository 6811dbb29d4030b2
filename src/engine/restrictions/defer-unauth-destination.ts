// defer_unauth_destination: as reject_unauth_destination, with Postfix's temporary reply
// (access_map_defer_code 450, 4.7.1): useful while a new relay_domains list is being checked.
// Security: same gate as reject_unauth_destination (destination.ts).

import type { RestrictionDef } from '../restriction.ts';
import { unauthDestination } from './reject-unauth-destination.ts';

export const deferUnauthDestination: RestrictionDef = {
  name: 'defer_unauth_destination',
  takesTable: false,
  doc: 'as above with a temporary 4xx reply',
  refusesRelay: true,
  compile: () => unauthDestination(450, '4.7.1'),
};
