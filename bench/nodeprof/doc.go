// Package nodeprof profiles clustermail nodes under SMTP load: the nodes
// run in this test's process (node.Start, as `clustermail server` does),
// so runtime/pprof sees them, while the load comes from Postfix's
// smtp-source in a separate process (or, without it, from the in-process
// generator of bench/smtpload, whose own cost then shows in the profile).
//
//	CLUSTERMAIL_PROFILE=/tmp/cpu.pprof go test ./bench/nodeprof -run TestProfileNodes -v -timeout 30m
//	go tool pprof -top /tmp/cpu.pprof
//
// Env: CLUSTERMAIL_PROFILE (output file; the test is skipped without it),
// PROFILE_NODES [1] (1 or 3: three nodes in one process, one profile),
// PROFILE_MSGS [10000] PROFILE_SIZE [1024] PROFILE_CONC [10].
package nodeprof
