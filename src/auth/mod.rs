//! NDMP authentication arithmetic shared by the server and the DMA client: the MD5 digest of
//! spec §3.1.2 and constant-time comparison.

mod throttle;

pub use throttle::Throttle;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Passwords longer than this are truncated before digesting, as NDMJOB does.
pub const MD5_PASSWORD_MAX: usize = 32;

/// The MD5 digest a DMA sends in CONNECT_CLIENT_AUTH: MD5 over 128 bytes laid out as
/// password, zero padding, the 64-byte challenge (starting at 64 - len), then the password
/// again ending at byte 127.
pub fn md5_digest(password: &[u8], challenge: &[u8; 64]) -> [u8; 16] {
    let pw = &password[..password.len().min(MD5_PASSWORD_MAX)];
    let mut msg = [0u8; 128];
    msg[..pw.len()].copy_from_slice(pw);
    msg[64 - pw.len()..128 - pw.len()].copy_from_slice(challenge);
    msg[128 - pw.len()..].copy_from_slice(pw);
    Md5::digest(msg).into()
}

/// Equality that takes the same time wherever the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_layout() {
        // built by hand: "ndmp" at 0, challenge at 60..124, "ndmp" at 124..128
        let challenge: [u8; 64] = std::array::from_fn(|i| i as u8);
        let mut msg = [0u8; 128];
        msg[..4].copy_from_slice(b"ndmp");
        msg[60..124].copy_from_slice(&challenge);
        msg[124..].copy_from_slice(b"ndmp");
        let want: [u8; 16] = Md5::digest(msg).into();
        assert_eq!(md5_digest(b"ndmp", &challenge), want);
        // long passwords are cut to 32 bytes
        let long = [b'x'; 40];
        assert_eq!(
            md5_digest(&long, &challenge),
            md5_digest(&long[..32], &challenge)
        );
        assert_ne!(md5_digest(b"ndmq", &challenge), want);
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
