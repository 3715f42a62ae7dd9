//go:build race

package drill

// raceBuild: the test binary is built with -race, so the replicas are too (the same
// build cache, and a data race in a replica under the drill's load is found).
const raceBuild = true
