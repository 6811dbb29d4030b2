// Domain lists: mydestination (exact match) and relay_domains (Postfix parent_domain_matches_subdomains:
// `example.com` matches itself and every subdomain). In both, an entry `.example.com` matches subdomains
// only, as in Postfix's match_list. Names are compared in lower case without a trailing dot.
// Security: entries come from the configuration and are validated when the engine is built; a lookup
// table or an address where a domain belongs is refused, not silently never matched.

export class DomainList {
  private readonly exact = new Set<string>();
  /** suffix that matches subdomains (`.example.com`) → the entry that put it there, for traces */
  private readonly subdomainOf = new Map<string, string>();
  readonly problems: string[] = [];

  constructor(
    readonly what: string,
    entries: readonly string[],
    parentMatchesSubdomains: boolean,
  ) {
    for (const entry of entries) {
      let d = entry.trim().toLowerCase();
      if (d.endsWith('.')) d = d.slice(0, -1);
      if (d === '' || d === '.' || /[\s@:,/]/.test(d) || d.includes('..')) {
        this.problems.push(
          `${what}: ${JSON.stringify(entry)} is not a domain name${entry.includes(':') ? ' (lookup tables are not supported here; list the domains)' : ''}`,
        );
        continue;
      }
      if (d.startsWith('.')) {
        if (!this.subdomainOf.has(d)) this.subdomainOf.set(d, d);
      } else {
        this.exact.add(d);
        if (parentMatchesSubdomains && !this.subdomainOf.has(`.${d}`)) this.subdomainOf.set(`.${d}`, d);
      }
    }
  }

  /** The entry that matches `domain` (already lower case, no trailing dot), or undefined. */
  match(domain: string): string | undefined {
    if (domain === '') return undefined;
    if (this.exact.has(domain)) return domain;
    if (this.subdomainOf.size === 0) return undefined;
    for (let dot = domain.indexOf('.'); dot !== -1; dot = domain.indexOf('.', dot + 1)) {
      const entry = this.subdomainOf.get(domain.slice(dot));
      if (entry !== undefined) return entry;
    }
    return undefined;
  }
}
