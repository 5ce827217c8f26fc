// Package testproc holds what tests need of the processes they start
// (private PostgreSQL, MariaDB and slapd servers) that differs between
// systems. It is test support: cmd/lmtpd must not import it
// (TestNotInProduct).
package testproc
