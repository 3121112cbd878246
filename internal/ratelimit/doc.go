// Package ratelimit decides whether the primary accepts a new leaf from a submitter (PROTOCOL.md §6): it applies
// the limits file, verifies sigsum-token headers against keys published in DNS, and counts new leaves over a
// sliding 24-hour window that survives restarts. It follows the reference server (sigsum/log-go
// doc/rate-limit.md) where that says something.
//
// # Limits file
//
// One line each; fields separated by white space; "#" starts a comment running to the end of the line; blank
// lines are ignored. n is an unsigned decimal from 0 to 2^31-1: new leaves per sliding 24 hours, 0 allowing none.
//
//	key <key_hash hex> <n>       leaves signed by the key with this hash; no token needed
//	domain <domain> <n>          leaves with a verified token for this domain or any subdomain, all counted
//	                             together on one counter for the line (as the reference does)
//	public <suffix list> <n>     leaves with a verified token for any other domain, counted per registered
//	                             domain (public suffix plus one label)
//
// The suffix list is "default" (the list compiled into golang.org/x/net/publicsuffix) or the path of a file in
// the publicsuffix.org format (the reference accepts only a file); a relative path is relative to the limits
// file's directory. A key hash or domain listed twice, or a second public line, is an error (the reference
// silently keeps the last). Domains may be written in Unicode or punycode, any case, with or without a trailing
// dot: they are normalised with the IDNA lookup profile to lowercase ASCII, as token domains are, so all
// spellings of one name share a line and a counter. A name with no known public suffix (an unlisted top-level
// domain) or that is itself a public suffix has no registered domain, so the public line does not apply to it.
//
// # Deciding
//
// See Limiter.Check for the precedence. In short: key line, else (token required) the test domain refusal,
// else the longest matching domain line, else the public line, else 429; the token must verify against one of
// the first 10 TXT records at _sigsum_v1.<domain> (each a hex Ed25519 public key) over the log's key. The TXT
// label is _sigsum_v1 only; the reference client library's fallback to the older _sigsum_v0 label is not
// implemented. TXT lookups, successful or not, are cached per domain (5 minutes, 1 minute for failures) and
// bounded by a timeout.
//
// Errors carry their HTTP meaning (HTTPStatus): ErrRateLimited 429, ErrBadToken 403, ErrMalformedToken 400.
// A failed or timed-out DNS lookup is ErrBadToken (403) with the reason, like a token no key verifies: the
// reference answers 403 to any token it could not verify, and a 5xx would invite tight retries.
//
// # Charging
//
// Check reserves a slot on the counters it would charge; the add-leaf handler calls Charge once the leaf was
// queued and is new, or Release for a resubmission, a rejected leaf or a backend failure. Reserved slots count
// against the limit, so concurrent submissions cannot overshoot it; a reservation neither charged nor released
// is dropped after two minutes. Charges are kept in one-minute buckets and leave the window between 24 h and
// 24 h + 1 minute after they were made (never early). With Config.GlobalLimit, token-based (domain and public)
// leaves are also counted together against that limit.
//
// Counters are written to the state file (JSON, through atomicfile) every minute when changed and on Close,
// and loaded by New, so a restart does not reset quotas. Reload replaces the limits and keeps the counters.
package ratelimit
