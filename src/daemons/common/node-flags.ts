// The Node.js flags every `zynclone` process starts with: the package's
// /usr/bin/zynclone, the simulator's launchers and the benches pass them
// before the entry point (V8 sizes its heap once, at start).
//
// A daemon keeps little (the orchestrator ~9 MiB live with 100 guests
// asking) but allocates steadily, and V8 otherwise grows the young
// generation to 64 MiB semi-spaces: the orchestrator's RSS reached 213 MiB,
// in dom0, whose memory the guests want. With 8 MiB semi-spaces it stays near
// 115 MiB at the same CPU (npm run bench -- orchestrator).
export const ZYNCLONE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];
