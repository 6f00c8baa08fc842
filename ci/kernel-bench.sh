#!/usr/bin/env bash
# Side-by-side figures on the real netmap module, in one boot of the QEMU guest of
# ../shared/netmap-guest (software emulation: compare the ratios, not the absolute rates).
# A benchmark, not a test: it prints ratios and never fails on speed. Not run by CI.
#
#   ci/kernel-bench.sh      # ROUNDS=3 N=2000000 by default; BENCH_LOG=FILE keeps the raw log
#
# In each of ROUNDS interleaved rounds, on a netmap pipe and on a VALE switch, 60 and 1500 B:
#   - examples/pkt_gen.rs against C pkt-gen, all four pairings (C->C, Rust->Rust, C->Rust,
#     Rust->C), the Rust side sync and --async; each run gives the sender's and the
#     receiver's rate (both tools time a receiver from its first packet; C pkt-gen receives
#     until 1 s idle (-W), pkt_gen receives N, or N/2 on VALE, which drops when a receiver
#     ring is full); the ratio is against C->C of the same round;
#   - the library's batch path (benches/kernel_loop.rs) against a minimal C loop on the same
#     rings (ci/bench/nmloop.c: copy a template of the frame length per packet, one sync per
#     burst of 512), as sender (C pkt-gen receives) and as receiver (C pkt-gen sends).
# Then, once, system calls per burst of 512 (strace -c, when the host has strace).
# Prints the medians of the per-round ratios as a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${NETMAP_GUEST_RUN:-../shared/netmap-guest/run}
NG=$(dirname "$RUN")
ROUNDS=${ROUNDS:-3}
N=${N:-2000000}
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}

payload=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$payload" "$log" "$log.lines"' EXIT
cargo build --release --example pkt_gen >/dev/null 2>&1
loop_bin=$(cargo bench --bench kernel_loop --no-run 2>&1 | sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
cp "$target/release/examples/pkt_gen" "$payload/"
cp "$loop_bin" "$payload/kernel_loop"
gcc -O2 -Wall -I"$NG/include" ci/bench/nmloop.c -L"$NG/lib" -lnetmap -o "$payload/nmloop"
if command -v strace >/dev/null; then cp "$(command -v strace)" "$payload/"; fi

cat >"$payload/bench.sh" <<'GUEST'
# Runs in the guest (bash), in /payload. Prints "R round port len mode pairing tx rx" lines
# (Mpps), "L round len dir impl Mpps" lines and "S what calls bursts" lines.
mpps() { # the rate from a pkt-gen / pkt_gen "Speed:" line, in Mpps
  awk '/^Speed:/ { v = $2; u = $3; if (u ~ /^K/) v /= 1000; if (u ~ /^G/) v *= 1000;
       if (u ~ /^pps/) v /= 1e6; print v; exit }' "$1"
}
cpg() { pkt-gen -w 0 "$@"; }
pair() { # round port len mode label rx-cmd -- tx-cmd
  local r=$1 port=$2 len=$3 mode=$4 label=$5; shift 5
  local rx=() ; while [ "$1" != "--" ]; do rx+=("$1"); shift; done; shift
  timeout 120 "${rx[@]}" >rx.out 2>/dev/null & local pid=$!
  sleep 0.5
  timeout 120 "$@" >tx.out 2>/dev/null
  wait $pid
  echo "R $r $port $len $mode $label $(mpps tx.out) $(mpps rx.out)"
}
for r in $(seq 1 "$ROUNDS"); do
  for port in pipe vale; do
    if [ $port = pipe ]; then T='netmap:bp{1'; X='netmap:bp}1'; NR=$N
    else T='vale1:a'; X='vale1:b'; NR=$((N / 2)); fi   # VALE drops when full: pkt_gen rx stops at N/2
    for len in 60 1500; do
      pair $r $port $len sync C-C cpg -i "$X" -f rx -W -- cpg -i "$T" -f tx -l $len -n $N
      for mode in sync async; do
        a=; [ $mode = async ] && a=--async
        pair $r $port $len $mode R-R ./pkt_gen -i "$X" -f rx -n $NR $a -- ./pkt_gen -i "$T" -f tx -l $len -n $N $a
        pair $r $port $len $mode C-R ./pkt_gen -i "$X" -f rx -n $NR $a -- cpg -i "$T" -f tx -l $len -n $N
        pair $r $port $len $mode R-C cpg -i "$X" -f rx -W -- ./pkt_gen -i "$T" -f tx -l $len -n $N $a
      done
    done
  done
  for len in 60 1500; do
    for impl in nmloop kernel_loop; do
      timeout 120 cpg -i 'netmap:lp}1' -f rx -W >/dev/null 2>&1 & pid=$!; sleep 0.5
      echo "L $r $len tx $impl $(timeout 120 ./$impl tx 'netmap:lp{1' $N $len | awk '{print $(NF-4)}')"
      wait $pid
      timeout 120 ./$impl rx 'netmap:lq}1' $N $len >rx.out & pid=$!; sleep 0.5
      timeout 120 cpg -i 'netmap:lq{1' -f tx -l $len -n $N >/dev/null 2>&1; wait $pid
      echo "L $r $len rx $impl $(awk '{print $(NF-4)}' rx.out)"
    done
  done
done
if [ -x ./strace ]; then
  S=200000; B=$((S / 512))
  sc() { awk '$NF == "total" { print $4 }' "$1"; }
  trace="-f -c -e trace=ioctl,poll,ppoll,epoll_wait,epoll_pwait,epoll_ctl,futex,sched_yield,read,write"
  for who in C Rust Rust-async; do
    case $who in
      C) txc="pkt-gen -w 0"; a=; rxn=-W ;;
      Rust) txc=./pkt_gen; a=; rxn="-n $S" ;;
      Rust-async) txc=./pkt_gen; a=--async; rxn="-n $S" ;;
    esac
    pkt-gen -w 0 -i 'netmap:sc}1' -f rx -W >/dev/null 2>&1 & pid=$!; sleep 0.5
    timeout 120 ./strace $trace -o st.out $txc -i 'netmap:sc{1' -f tx -l 60 -n $S $a >/dev/null 2>&1; wait $pid
    echo "S tx-$who $(sc st.out) $B"
    timeout 120 ./strace $trace -o st.out $txc -i 'netmap:sd}1' -f rx $rxn $a >/dev/null 2>&1 & pid=$!; sleep 1
    timeout 120 pkt-gen -w 0 -i 'netmap:sd{1' -f tx -l 60 -n $S >/dev/null 2>&1; wait $pid
    echo "S rx-$who $(sc st.out) $B"
  done
fi
GUEST

echo "== one guest boot: $ROUNDS rounds, $N packets per run (takes a while under TCG)" >&2
NMVM_TIMEOUT=${NMVM_TIMEOUT:-3000} NMVM_ENV_ROUNDS=$ROUNDS NMVM_ENV_N=$N \
  "$RUN" "$payload" 'bash bench.sh' >"$log" 2>&1 || true
if [ -n "${BENCH_LOG:-}" ]; then cp "$log" "$BENCH_LOG"; fi   # the guest's whole output
grep -E '^[RLS] ' "$log" >"$log.lines" || { cat "$log"; exit 1; }
python3 - "$log.lines" "$ROUNDS" "$N" <<'PY'
import sys, statistics as st
from collections import defaultdict
lines = [l.split() for l in open(sys.argv[1])]
med = lambda xs: st.median(xs) if xs else float("nan")
R = defaultdict(dict)   # (round, port, len) -> {(mode, pairing): (tx, rx)}
for l in lines:
    if l[0] == "R" and len(l) == 8:
        R[(l[1], l[2], l[3])][(l[4], l[5])] = (float(l[6]), float(l[7]))
print(f"## pkt_gen vs C pkt-gen: medians of per-round ratios to C->C ({sys.argv[2]} rounds, {sys.argv[3]} packets)\n")
print("| port | frame | Rust side | pairing | sender rate ratio | receiver rate ratio |")
print("|---|---|---|---|---|---|")
for port in ("pipe", "vale"):
    for ln in ("60", "1500"):
        for mode in ("sync", "async"):
            for pr, desc in (("R-R", "Rust->Rust"), ("R-C", "Rust->C"), ("C-R", "C->Rust")):
                tx, rx = [], []
                for (r, p, l), d in R.items():
                    if p != port or l != ln or ("sync", "C-C") not in d or (mode, pr) not in d:
                        continue
                    b = d[("sync", "C-C")]
                    tx.append(d[(mode, pr)][0] / b[0]); rx.append(d[(mode, pr)][1] / b[1])
                print(f"| {port} | {ln} B | {mode} | {desc} | {med(tx):.2f} | {med(rx):.2f} |")
cc = defaultdict(list)
for (r, p, l), d in R.items():
    if ("sync", "C-C") in d:
        cc[(p, l)].append(d[("sync", "C-C")])
print("\nC->C medians (Mpps, sender/receiver): " + ", ".join(
    f"{p} {l} B {med([x[0] for x in v]):.2f}/{med([x[1] for x in v]):.2f}" for (p, l), v in sorted(cc.items())))
L = defaultdict(dict)
for l in lines:
    if l[0] == "L" and len(l) == 6:
        L[(l[1], l[2], l[3])][l[4]] = float(l[5])
print("\n## library batch path (benches/kernel_loop.rs) vs minimal C loop (ci/bench/nmloop.c), pipe\n")
print("| frame | direction | Rust / C (median of per-round ratios) | C loop Mpps (median) |")
print("|---|---|---|---|")
for ln in ("60", "1500"):
    for dr in ("tx", "rx"):
        rs = [d["kernel_loop"] / d["nmloop"] for (r, l, x), d in L.items()
              if l == ln and x == dr and "kernel_loop" in d and "nmloop" in d and d["nmloop"] > 0]
        cs = [d["nmloop"] for (r, l, x), d in L.items() if l == ln and x == dr and "nmloop" in d]
        print(f"| {ln} B | {dr} | {med(rs):.2f} | {med(cs):.2f} |")
S = [l for l in lines if l[0] == "S" and len(l) == 4 and l[2].isdigit()]
if S:
    print("\n## system calls per burst of 512 (strace -c: ioctl, poll, epoll, futex, read, write; 200000 packets of 60 B, pipe)\n")
    print("| side | C pkt-gen | pkt_gen | pkt_gen --async |")
    print("|---|---|---|---|")
    get = {l[1]: int(l[2]) / int(l[3]) for l in S}
    for side in ("tx", "rx"):
        print(f"| {side} | " + " | ".join(f"{get.get(f'{side}-{w}', float('nan')):.2f}" for w in ("C", "Rust", "Rust-async")) + " |")
PY
