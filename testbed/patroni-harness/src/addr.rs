//! Loopback address allocation.
//!
//! Every node gets its own 127.x.y.z so that it can use the real ports (5432, 8008) like a pod
//! does. Linux routes all of 127.0.0.0/8 to `lo`, so no setup is needed. Addresses come from a
//! per-process random starting point plus a per-process counter: unique within a process by
//! construction, and across parallel test processes (cargo test, nextest) with overwhelming
//! probability; a bind check on the node's ports catches the rest.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{HarnessError, Result};

/// Second octet 1..=254 (keeps clear of 127.0.0.x, where 127.0.0.1 services live),
/// third 0..=255, fourth 1..=254 (no .0/.255 look-alikes of network/broadcast addresses).
const SPACE: u32 = 254 * 256 * 254;

static START: OnceLock<u32> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The n-th candidate address after this process's random starting point.
fn candidate(n: u32) -> Ipv4Addr {
    let start = *START.get_or_init(|| rand::random::<u32>() % SPACE);
    at_index((start + n % SPACE) % SPACE)
}

/// Maps `0..SPACE` one-to-one onto the allowed addresses.
fn at_index(index: u32) -> Ipv4Addr {
    let b = 1 + index / (256 * 254);
    let c = (index / 254) % 256;
    let d = 1 + index % 254;
    // For index < SPACE every part fits in a u8; see SPACE.
    Ipv4Addr::new(127, b as u8, c as u8, d as u8)
}

/// Returns a loopback address not handed out before in this process on which every port in
/// `ports` can currently be bound.
pub fn allocate_loopback(ports: &[u16]) -> Result<Ipv4Addr> {
    const TRIES: u32 = 64;
    for _ in 0..TRIES {
        let ip = candidate(NEXT.fetch_add(1, Ordering::Relaxed));
        // The listeners are dropped at once; they only prove nobody holds the ports now.
        let free = ports
            .iter()
            .all(|&port| TcpListener::bind(SocketAddrV4::new(ip, port)).is_ok());
        if free {
            return Ok(ip);
        }
    }
    Err(HarnessError::NoAddress {
        ports: ports.to_vec(),
        tries: TRIES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn candidates_are_distinct_loopback_host_addresses() {
        let mut seen = HashSet::new();
        for n in 0..5000 {
            let ip = candidate(n);
            let [a, b, _, d] = ip.octets();
            assert_eq!(a, 127);
            assert_ne!(b, 0, "{ip} is in 127.0.0.0/24");
            assert!(b != 255 && d != 0 && d != 255, "{ip}");
            assert!(seen.insert(ip), "{ip} handed out twice");
        }
    }

    #[test]
    fn index_mapping_covers_the_space_without_overflow() {
        assert_eq!(at_index(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(at_index(253), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(at_index(254), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(at_index(SPACE - 1), Ipv4Addr::new(127, 254, 255, 254));
    }

    #[test]
    fn allocated_addresses_are_unique_and_bindable() {
        let a = allocate_loopback(&[0]).unwrap();
        let b = allocate_loopback(&[0]).unwrap();
        assert_ne!(a, b);
        TcpListener::bind((a, 0)).unwrap();
    }
}
