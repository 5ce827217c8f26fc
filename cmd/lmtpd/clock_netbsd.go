package main

// clockMonotonic is CLOCK_MONOTONIC for clock_gettime(2) (<sys/time.h>;
// golang.org/x/sys/unix does not name it for NetBSD).
const clockMonotonic = 3
