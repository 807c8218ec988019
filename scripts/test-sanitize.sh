#!/usr/bin/env bash
# npm run test:sanitize — the native layer under AddressSanitizer + UndefinedBehaviorSanitizer:
#  1. the core mutation fuzzer (native/test/fuzz_segment.cc) from the seed corpus plus random runs,
#     the SIGBUS guard's cases (native/test/truncation_guard_test.cc), and when a wait returns
#     for a peer that left and what ends a wait with no timeout (native/test/wait_test.cc), and
#     the loan pools' allocator and checks (native/test/pool_test.cc), the message API
#     against misbehaving peers (native/test/message_test.cc), and a server of many clients
#     with real, dying and hostile client processes (native/test/server_test.cc);
#  2. the spec suite against a sanitized addon (spawned peers inherit it), including the
#     hostile-peer specs. Any out-of-bounds access or undefined behaviour aborts the run.
# FUZZ_RUNS (default 2000) sets the fuzzer's run count; SANITIZE_SPECS narrows the specs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-sanitize
mkdir -p "$out/src"
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1)

echo "== core fuzzer (ASan+UBSan)"
g++ -std=c++17 "${sanitize[@]}" -Wall -Wextra native/test/fuzz_segment.cc native/core/*.cc \
  -o "$out/fuzz_segment" -lrt -lpthread
"$out/fuzz_segment" "${FUZZ_RUNS:-2000}" native/test/fuzz-seeds.txt

echo "== SIGBUS guard (ASan+UBSan)"
g++ -std=c++17 "${sanitize[@]}" -Wall -Wextra native/test/truncation_guard_test.cc native/core/*.cc \
  -o "$out/truncation_guard_test" -lrt -lpthread
"$out/truncation_guard_test"

echo "== wake-ups: a peer's leave, waits with no timeout (ASan+UBSan)"
g++ -std=c++17 "${sanitize[@]}" -Wall -Wextra native/test/wait_test.cc native/core/*.cc \
  -o "$out/wait_test" -lrt -lpthread
"$out/wait_test"

echo "== message API: open abort, DRAINED, misbehaving peers (ASan+UBSan)"
g++ -std=c++17 "${sanitize[@]}" -Wall -Wextra native/test/message_test.cc native/core/*.cc \
  -o "$out/message_test" -lrt -lpthread
"$out/message_test"

echo "== loan pools: allocator, releases, descriptors, v2 header (ASan+UBSan)"
g++ -std=c++17 "${sanitize[@]}" -Wall -Wextra native/test/pool_test.cc native/core/*.cc \
  -o "$out/pool_test" -lrt -lpthread
"$out/pool_test"

echo "== many clients: directory, connections, hostile and dying peers (ASan+UBSan)"
g++ -std=c++17 "${sanitize[@]}" -Wall -Wextra native/test/server_test.cc native/core/*.cc \
  -o "$out/server_test" -lrt -lpthread
"$out/server_test"

echo "== sanitized addon"
# Built from a copy so the regular build/ stays as it is.
rm -rf "$out/src" && mkdir -p "$out/src" && cp -r binding.gyp native "$out/src/"
(cd "$out/src" && SHMCHANNEL_SANITIZE=1 npx --no-install node-gyp rebuild >/dev/null)
cp "$out/src/build/Release/shmchannel.node" "$out/shmchannel.node"

echo "== specs against the sanitized addon"
npm run build >/dev/null
# .mocharc.json lists the whole suite and mocha adds files named on the command line to it,
# so a narrowed run gets a config of its own.
config=.mocharc.json
if [ -n "${SANITIZE_SPECS:-}" ]; then
  config="$out/mocharc.json"
  node -e "const c=require('./.mocharc.json'); delete c.spec; require('fs').writeFileSync('$config', JSON.stringify(c))"
fi
SHMCHANNEL_ADDON="$PWD/$out/shmchannel.node" \
LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  npx --no-install mocha --config "$config" ${SANITIZE_SPECS:-}
