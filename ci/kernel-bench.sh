#!/usr/bin/env bash
# Side-by-side figures on the real netmap module, in one boot of the QEMU guest of
# ../shared/netmap-guest (software emulation: compare the ratios, not the absolute rates).
# A benchmark, not a test: it prints ratios and never fails on speed. Not run by CI (too slow).
#
#   ci/kernel-bench.sh      # ROUNDS=3 N=300000 by default (about 8 minutes on a busy 2-core host)
#   BENCH_LOG=/tmp/b.log ROUNDS=1 N=100000 ci/kernel-bench.sh   # quick check, keeps the raw log
#   PARTS="loops pktgen" ci/kernel-bench.sh   # only some parts: loops, pktgen, strace
#   BASE=0f034f7 PARTS=loops ci/kernel-bench.sh  # also the library loop built at another
#                                                # commit, in the same rounds (before/after)
#
# In each of ROUNDS interleaved rounds, on a netmap pipe and on a VALE switch, 60 and 1500 B:
#   - the library's batch path (benches/kernel_loop.rs) against a minimal C loop on the same
#     rings (ci/bench/nmloop.c: copy a template of the frame length per packet, one sync per
#     burst of 512), as sender (C pkt-gen receives) and as receiver (C pkt-gen sends);
#   - examples/pkt_gen/ against C pkt-gen, all four pairings (C->C, Rust->Rust, C->Rust,
#     Rust->C), the Rust side sync and --async; each run gives the sender's and the
#     receiver's rate (every receiver times from its first packet to its last and exits after
#     1 s without traffic: `-W` in both tools); the ratio is against C->C of the same round.
# Then, once, system calls per 512 packets (strace -f -c, when the host has strace), for
# C pkt-gen, pkt_gen, pkt_gen --async, the C loop and the library loop.
# Prints the medians of the per-round ratios as Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${NETMAP_GUEST_RUN:-../shared/netmap-guest/run}
NG=$(dirname "$RUN")
ROUNDS=${ROUNDS:-3}
N=${N:-300000}
PARTS=${PARTS:-loops pktgen strace}
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}

payload=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$payload" "$log" "$log.lines"' EXIT
cargo build --release --example pkt_gen >/dev/null 2>&1
loop_bin=$(cargo bench --bench kernel_loop --no-run 2>&1 | sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
cp "$target/release/examples/pkt_gen" "$payload/"
cp "$loop_bin" "$payload/kernel_loop"
if [ -n "${BASE:-}" ]; then # the loop at another commit, built in a worktree of its own
  wt=$(mktemp -d)
  git worktree add -q --detach "$wt/src" "$BASE"
  base_bin=$(cd "$wt/src" && CARGO_TARGET_DIR="$wt/target" cargo bench --bench kernel_loop \
    --no-run 2>&1 | sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
  cp "$base_bin" "$payload/kernel_loop_base"
  git worktree remove --force "$wt/src"; rm -rf "$wt"
fi
gcc -O2 -Wall -I"$NG/include" ci/bench/nmloop.c -L"$NG/lib" -lnetmap -o "$payload/nmloop"
if command -v strace >/dev/null; then cp "$(command -v strace)" "$payload/"; fi
# C pkt-gen waits 2 s for the link unless told otherwise; `timeout` cannot run a shell
# function, so the wrapper is a script.
printf '#!/bin/sh\nexec pkt-gen -w 0 "$@"\n' >"$payload/cpg"
chmod +x "$payload/cpg"

cat >"$payload/bench.sh" <<'GUEST'
# Runs in the guest (bash), in /payload. Prints "R round port len mode pairing tx rx" lines
# (Mpps), "L round port len dir impl Mpps syscalls packets" lines and
# "S who dir syscall calls packets" lines.
mpps() { # the rate from a pkt-gen / pkt_gen "Speed:" line, in Mpps
  awk '/^Speed:/ { v = $2; u = $3; if (u ~ /^K/) v /= 1000; if (u ~ /^G/) v *= 1000;
       if (u ~ /^pps/) v /= 1e6; print v; exit }' "$1"
}
pair() { # round port len mode label rx-cmd -- tx-cmd
  local r=$1 port=$2 len=$3 mode=$4 label=$5; shift 5
  local rx=() ; while [ "$1" != "--" ]; do rx+=("$1"); shift; done; shift
  timeout 60 "${rx[@]}" >rx.out 2>/dev/null & local pid=$!
  sleep 0.3
  timeout 60 "$@" >tx.out 2>/dev/null
  wait $pid
  echo "R $r $port $len $mode $label $(mpps tx.out) $(mpps rx.out)"
}
loops() { # round port len impl tx-port rx-sink-port rx-port tx-source-port
  local r=$1 port=$2 len=$3 impl=$4
  timeout 60 ./cpg -i "$6" -f rx -W >/dev/null 2>&1 & local pid=$!; sleep 0.3
  echo "L $r $port $len tx $impl $(timeout 60 ./$impl tx "$5" $N $len | awk '{print $(NF-4), $(NF-2), $3}')"
  wait $pid
  timeout 60 ./$impl rx "$7" $N $len >rx.out & pid=$!; sleep 0.3
  timeout 60 ./cpg -i "$8" -f tx -l $len -n $N >/dev/null 2>&1; wait $pid
  echo "L $r $port $len rx $impl $(awk '{print $(NF-4), $(NF-2), $3}' rx.out)"
}
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
for r in $(seq 1 "$ROUNDS"); do
  # Alternate which side runs first from round to round.
  if [ $((r % 2)) = 1 ]; then impls="nmloop kernel_loop"; else impls="kernel_loop nmloop"; fi
  if [ -x ./kernel_loop_base ]; then impls="$impls kernel_loop_base"; fi
  want loops && for len in 60 1500; do
    for impl in $impls; do
      loops $r pipe $len $impl 'netmap:lp{1' 'netmap:lp}1' 'netmap:lq}1' 'netmap:lq{1'
      loops $r vale $len $impl 'vale2:a' 'vale2:b' 'vale3:b' 'vale3:a'
    done
  done
  want pktgen && for port in pipe vale; do
    if [ $port = pipe ]; then T='netmap:bp{1'; X='netmap:bp}1'
    else T='vale1:a'; X='vale1:b'; fi
    for len in 60 1500; do
      pair $r $port $len sync C-C ./cpg -i "$X" -f rx -W -- ./cpg -i "$T" -f tx -l $len -n $N
      for mode in sync async; do
        a=; [ $mode = async ] && a=--async
        pair $r $port $len $mode R-R ./pkt_gen -i "$X" -f rx -W $a -- ./pkt_gen -i "$T" -f tx -l $len -n $N $a
        pair $r $port $len $mode C-R ./pkt_gen -i "$X" -f rx -W $a -- ./cpg -i "$T" -f tx -l $len -n $N
        pair $r $port $len $mode R-C ./cpg -i "$X" -f rx -W -- ./pkt_gen -i "$T" -f tx -l $len -n $N $a
      done
    done
  done
done
if [ -x ./strace ] && want strace; then
  S=200000
  trace="-f -c -e trace=ioctl,poll,ppoll,epoll_wait,epoll_pwait,epoll_ctl,futex,sched_yield,read,write"
  st() { # who dir: the strace -c table as "S who dir syscall calls packets" lines
    awk -v w="$1" -v d="$2" -v s=$S '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { print "S", w, d, $NF, $4, s }' st.out
  }
  for who in C Rust Rust-async; do
    case $who in
      C) g="./cpg"; a= ;;
      Rust) g=./pkt_gen; a= ;;
      Rust-async) g=./pkt_gen; a=--async ;;
    esac
    ./cpg -i 'netmap:sc}1' -f rx -W >/dev/null 2>&1 & pid=$!; sleep 0.3
    timeout 60 ./strace $trace -o st.out $g -i 'netmap:sc{1' -f tx -l 60 -n $S $a >/dev/null 2>&1; wait $pid
    st $who tx
    timeout 60 ./strace $trace -o st.out $g -i 'netmap:sd}1' -f rx -W $a >/dev/null 2>&1 & pid=$!; sleep 1
    timeout 60 ./cpg -i 'netmap:sd{1' -f tx -l 60 -n $S >/dev/null 2>&1; wait $pid
    st $who rx
  done
  for impl in nmloop kernel_loop; do
    ./cpg -i 'netmap:se}1' -f rx -W >/dev/null 2>&1 & pid=$!; sleep 0.3
    timeout 60 ./strace $trace -o st.out ./$impl tx 'netmap:se{1' $S 60 >/dev/null 2>&1; wait $pid
    st $impl tx
    timeout 60 ./strace $trace -o st.out ./$impl rx 'netmap:sf}1' $S 60 >/dev/null 2>&1 & pid=$!; sleep 1
    timeout 60 ./cpg -i 'netmap:sf{1' -f tx -l 60 -n $S >/dev/null 2>&1; wait $pid
    st $impl rx
  done
fi
GUEST

echo "== one guest boot: $ROUNDS rounds, $N packets per run (takes a while under TCG)" >&2
NMVM_TIMEOUT=${NMVM_TIMEOUT:-3000} NMVM_ENV_ROUNDS=$ROUNDS NMVM_ENV_N=$N NMVM_ENV_PARTS="$PARTS" \
  "$RUN" "$payload" 'bash bench.sh' >"$log" 2>&1 || true
if [ -n "${BENCH_LOG:-}" ]; then cp "$log" "$BENCH_LOG"; fi   # the guest's whole output
grep -E '^[RLS] ' "$log" >"$log.lines" || { cat "$log"; exit 1; }
python3 ci/bench/report.py "$log.lines" "$ROUNDS" "$N"
