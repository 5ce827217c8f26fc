// Package pgtest starts a private PostgreSQL for tests that talk to a real
// one: initdb and postgres in a temporary directory, listening on a unix
// socket only, as nobody when the tests run as root (PostgreSQL refuses
// to run as root). It is for tests only; nothing in the product imports
// it.
//
// Under CI=true a PostgreSQL that cannot start fails the test; elsewhere
// the test is skipped loudly, with the reason, on stderr and in the log.
package pgtest
