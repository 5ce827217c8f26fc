// Package sasl implements the server side of the SASL mechanisms lmtpd
// offers for SMTP AUTH (RFC 4954), on the Server interface of
// github.com/emersion/go-sasl, and the credential store behind them.
//
// # Mechanisms
//
//   - PLAIN, RFC 4616, wrapping go-sasl's parser (NewPlainServer);
//   - LOGIN, draft-murchison-sasl-login-00 (NewLoginServer);
//   - SCRAM-SHA-256, RFC 5802 and RFC 7677, without channel binding:
//     advertise SCRAM-SHA-256, never SCRAM-SHA-256-PLUS (NewScramServer);
//   - CRAM-MD5, RFC 2195, off unless a user has a CRAM secret
//     (NewCramMD5Server).
//
// Store.NewServer builds any of them against a Store; IsPlaintext tells
// which must be offered only under TLS.
//
// # Credentials
//
// Passwords are stored as argon2id PHC strings (RFC 9106; HashPassword),
// and bcrypt hashes are accepted for verification (VerifyPassword). SCRAM
// keys are stored as salted keys, never the password, in PostgreSQL's
// text encoding (NewScramCredentials, ParseScramCredentials). MakeSecrets
// makes both from one password.
//
// Stored passwords may also be in Dovecot's "{SCHEME}" forms (scheme.go:
// SHA512-CRYPT, BLF-CRYPT, ARGON2I, SSHA512, PBKDF2, PLAIN...), so the
// password columns of an existing Dovecot setup work; HashWithScheme
// writes the strong ones, and an unknown scheme is an *UnknownSchemeError
// naming it.
//
// # What callers can rely on
//
//   - Errors from a Server's Next match ErrMalformed (the client broke the
//     mechanism: answer 501) or ErrAuthFailed (credentials not proven:
//     answer 535 5.7.8); anything else is an internal failure (answer
//     454). Store.NewServer fails with ErrUnsupportedMechanism (504).
//     SCRAM failures are *ScramError values that also carry the RFC 5802
//     section 7 server-error-value.
//   - An unknown user and a wrong password are indistinguishable: the same
//     error, and the same work. PLAIN and LOGIN verify a dummy hash with
//     the parameters of the users' hashes; SCRAM-SHA-256 carries on with a
//     fake, stable salt and fails only at the proof; CRAM-MD5 computes the
//     digest with a fake secret.
//   - Comparisons of hashes, proofs and digests are constant time.
//   - Nothing in this package logs. Error texts contain no password, proof,
//     key or hash, and no client-sent name (a user name is often a
//     mistyped password). ScramCredentials, CRAMSecret and User print as
//     "[REDACTED]" with fmt, encoding/json and log/slog.
//   - User names are compared after PrepareUsername, the SASLprep subset it
//     documents: exact for ASCII, without Unicode normalisation otherwise.
//   - Store is safe for concurrent use; a Server serves one exchange on one
//     goroutine.
//
// # Memory
//
// An argon2id verification allocates the hash's memory parameter m and
// drops it when done; Store.MaxVerifyMemory gives the largest m a check
// may take (the dummy hash's included), and VerifyPassword refuses hashes
// over 1 GiB. This package does not bound how many run at once: the
// caller does (protocol.Server.MaxAuthVerifications, lmtpd's [server]
// max_auth_verifications). With n at once, what the process needs is not
// n × m but up to 4 × n × m on top of what it needs without AUTH: Go's
// collector, at its default GOGC=100, lets the heap grow to twice what
// its last collection found in use, and a collection counts as in use
// everything allocated while it runs, so it finds the n checks in
// progress and up to n more started meanwhile. With 2 at once and m = 32
// MiB, collections found 3 × m in use in 6 runs of 10 (tests/
// auth_load_test.go) and the heap peaked at 193 MiB, against 128 MiB for
// 2 × n × m. Computing the dummy hash (Store.Replace; once per process
// with the default parameters) allocates one m more, outside the caller's
// bound; the process keeps that memory resident, and later checks reuse
// it.
//
// # Mechanisms without TLS
//
// IsPlaintext names the mechanisms that must not be offered on a
// connection without TLS (PLAIN and LOGIN): an eavesdropper would read the
// password itself. SCRAM-SHA-256 is deliberately not among them, the
// choice Dovecot's disable_plaintext_auth makes too (it refuses only
// plaintext mechanisms): the password never crosses the wire, only a
// proof bound to both sides' nonces, so a passive eavesdropper cannot
// replay it and the server's signature tells the client it talks to a
// server that knows the keys. What SCRAM without TLS does not protect:
//
//   - the session after AUTH, and the user name, are readable and can be
//     altered by an active attacker (no channel binding without TLS);
//   - a recorded exchange gives an offline guessing target (salt,
//     iteration count, nonces and proof), at the cost of the iteration
//     count per guess, as a leaked ScramCredentials would.
//
// lmtpd therefore offers SCRAM-SHA-256 on plaintext connections by
// default (clients on a trusted network, or ones that cannot do TLS, can
// still authenticate without exposing the password), and a listener that
// must not authenticate anyone over an unprotected session sets
// require_tls_for_auth, which withdraws every mechanism until STARTTLS
// (RFC 4954 section 4 lets a server require TLS for any mechanism).
//
// # Why CRAM-MD5 is off by default
//
// CRAM-MD5 keeps the password off the wire, but at a price the other
// mechanisms do not pay:
//
//   - the server must keep a password-equivalent secret: the plaintext or
//     the HMAC-MD5 precomputed key, which answers any challenge, so a leak
//     of the credentials file lets the thief log in without cracking
//     anything (SCRAM's StoredKey does not);
//   - that secret is unsalted and costs two MD5 compressions per guess, so
//     a leaked one gives up the password to a GPU quickly, whatever
//     argon2id protects the same password with elsewhere;
//   - MD5 is long broken for collision resistance, and the exchange gives
//     no mutual authentication: the client learns nothing about whether it
//     talks to the real server.
//
// SCRAM-SHA-256 has none of these faults, and PLAIN or LOGIN under TLS
// keep only an argon2id hash. CRAM-MD5 is therefore offered only when an
// administrator gives at least one user a CRAM secret (User.CRAM, in
// Dovecot's "{CRAM-MD5}" format), and it works only for those users.
package sasl
