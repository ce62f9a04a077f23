//! Random bytes from the kernel's CSPRNG, for every silo process: getrandom(2) through the
//! `getrandom` crate (no file to open, which landlock would refuse). Failures are errors: a
//! MAC, a salt or an interface name is never made from bytes that were not filled.

/// The kernel could not give random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the kernel's random number generator failed: {0}")]
pub struct RandomError(String);

/// Fills `buf` entirely.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut b = [0u8; N];
    fill(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_and_differs() {
        let a = super::bytes::<32>().expect("random");
        let b = super::bytes::<32>().expect("random");
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
