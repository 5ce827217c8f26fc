// Package readmetest reads the fenced blocks of the repository's
// README.md, so that tests run the schemas and configurations the README
// tells administrators to use, and a README edit that breaks them fails a
// test. It is for tests only; nothing in the product imports it.
package readmetest
