# Sourced by the scripts (and mirrored in the Makefile): ZynClone's own Node.js
# and npm, which scripts/setup.sh installs here, come first on PATH.
ZYNCLONE_TOOLCHAIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.toolchain/node
export PATH=$ZYNCLONE_TOOLCHAIN/bin:$PATH
