//! Ring index arithmetic: indices wrap at `num_slots`, and the user's part of a ring is the
//! cyclic range `[head, tail)`. Every function takes indices below `n` (checked by callers
//! where they come from shared memory) and cannot overflow, for rings of up to `u32::MAX`
//! slots.

/// Next ring index after `i` in a ring of `n` slots.
#[inline(always)]
pub(crate) fn next(i: u32, n: u32) -> u32 {
    let j = i + 1;
    if j == n {
        0
    } else {
        j
    }
}

/// Ring index `i + k` in a ring of `n` slots (`i < n`, `k <= n`). Computed in 64 bits, so
/// rings of more than 2^31 slots cannot overflow (it costs nothing on 64-bit targets).
#[inline(always)]
pub(crate) fn advance(i: u32, k: u32, n: u32) -> u32 {
    let j = u64::from(i) + u64::from(k);
    let n = u64::from(n);
    (if j >= n { j - n } else { j }) as u32
}

/// Previous ring index before `i` in a ring of `n` slots.
#[inline(always)]
pub(crate) fn prev(i: u32, n: u32) -> u32 {
    if i == 0 {
        n - 1
    } else {
        i - 1
    }
}

/// The cyclic range `[from, to)` of a ring of `n` slots as at most two contiguous runs
/// `(start, count)`.
#[inline]
pub(crate) fn runs(from: u32, to: u32, n: u32) -> [(u32, u32); 2] {
    if to >= from {
        [(from, to - from), (0, 0)]
    } else {
        [(from, n - from), (0, to)]
    }
}

/// Number of slots from `from` up to (not including) `to`, going forward, in a ring of `n`
/// (`from, to < n`). The wrapped case is `n - (from - to)`, which cannot overflow.
#[inline(always)]
pub(crate) fn distance(from: u32, to: u32, n: u32) -> u32 {
    if to >= from {
        to - from
    } else {
        n - (from - to)
    }
}

/// Whether `x` lies in the cyclic interval `[lo, hi]` of a ring of `n` slots.
#[inline(always)]
pub(crate) fn in_cyclic_range(lo: u32, x: u32, hi: u32, n: u32) -> bool {
    x < n && distance(lo, x, n) <= distance(lo, hi, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_arithmetic_wraps_at_num_slots() {
        let n = 8;
        assert_eq!(next(7, n), 0);
        assert_eq!(next(3, n), 4);
        assert_eq!(prev(0, n), 7);
        assert_eq!(advance(6, 3, n), 1);
        assert_eq!(advance(0, 8, n), 0);
        assert_eq!(distance(6, 1, n), 3);
        assert_eq!(distance(1, 6, n), 5);
        assert_eq!(distance(4, 4, n), 0);
        assert!(in_cyclic_range(6, 7, 1, n));
        assert!(in_cyclic_range(6, 0, 1, n));
        assert!(in_cyclic_range(6, 1, 1, n));
        assert!(!in_cyclic_range(6, 2, 1, n));
        assert!(!in_cyclic_range(6, 5, 1, n));
        assert!(!in_cyclic_range(0, 9, 7, n));
        // Rings of up to u32::MAX slots: nothing overflows, at either end of the ring.
        for big in [u32::MAX, u32::MAX - 1, (1 << 31) + 1] {
            assert_eq!(next(big - 1, big), 0);
            assert_eq!(next(big - 2, big), big - 1);
            assert_eq!(prev(0, big), big - 1);
            assert_eq!(distance(big - 1, 0, big), 1);
            assert_eq!(distance(0, big - 1, big), big - 1);
            assert_eq!(distance(big - 1, big - 2, big), big - 1);
            assert_eq!(advance(big - 2, big - 3, big), big - 5);
            assert_eq!(advance(big - 1, big, big), big - 1);
            assert_eq!(advance(big - 1, 1, big), 0);
            assert_eq!(advance(1, big - 1, big), 0);
            assert!(in_cyclic_range(big - 2, 1, 3, big));
            assert!(!in_cyclic_range(big - 2, 4, 3, big));
            assert!(in_cyclic_range(0, big - 1, big - 1, big));
            let [(a, b), (c, d)] = runs(big - 2, 3, big);
            assert_eq!((a, b, c, d), (big - 2, 2, 0, 3));
        }
    }
}
