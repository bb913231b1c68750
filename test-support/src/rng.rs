//! A tiny seeded random number generator for the fuzz stand-in tests (xorshift64): the
//! same seed gives the same inputs on every run, so a failure is reproducible.

/// A xorshift64 generator as a closure returning the next value. `seed` must not be 0.
///
/// ```
/// let mut next = test_support::xorshift(0x2545_f491_4f6c_dd1d);
/// let (a, b) = (next(), next());
/// assert_ne!(a, b);
/// assert_eq!(test_support::xorshift(0x2545_f491_4f6c_dd1d)(), a);
/// ```
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.max(1);
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
