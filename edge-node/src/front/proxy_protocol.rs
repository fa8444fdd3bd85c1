//! The PROXY protocol (version 2) a load balancer puts before a connection's bytes to say
//! whose connection it is. Read only from peers in `[http] trusted_proxies`: from anyone
//! else the header would be a client choosing its own address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Why a PROXY header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the PROXY header is malformed")]
    Malformed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The client a trusted proxy's connection carries: the source address of its PROXY v2
/// header, or `None` when the connection has no such header (or a `LOCAL` one, a health
/// check). The header is consumed; the connection's own bytes follow.
pub async fn read_source(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyError> {
    let mut start = [0u8; 16];
    // Peek until the signature is there, or the bytes already tell it is not.
    loop {
        let seen = stream.peek(&mut start).await?;
        if seen == 0 || start[..seen.min(12)] != SIGNATURE[..seen.min(12)] {
            return Ok(None);
        }
        if seen >= 16 {
            break;
        }
        // Part of the header is in (it nearly always comes in one piece): peeking again at
        // once would find the same bytes, so wait a moment. The caller bounds the wait.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    stream.read_exact(&mut start).await?;
    if start[12] >> 4 != 2 {
        return Err(ProxyError::Malformed);
    }
    let length = usize::from(u16::from_be_bytes([start[14], start[15]]));
    let mut block = vec![0u8; length];
    stream.read_exact(&mut block).await?;
    if start[12] & 0x0f == 0 {
        return Ok(None); // LOCAL: the proxy's own connection
    }
    parse_source(start[13], &block).map(Some)
}

/// The source address of an address block of `family` (TCP over IPv4 or IPv6).
fn parse_source(family: u8, block: &[u8]) -> Result<SocketAddr, ProxyError> {
    match family {
        0x11 if block.len() >= 12 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([block[8], block[9]])))
        }
        0x21 if block.len() >= 36 => {
            let octets: [u8; 16] = block[..16].try_into().map_err(|_| ProxyError::Malformed)?;
            let port = u16::from_be_bytes([block[32], block[33]]);
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => Err(ProxyError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_of_both_families() {
        let v4 = [203, 0, 113, 5, 10, 0, 0, 1, 0x1f, 0x90, 0, 80];
        assert_eq!(parse_source(0x11, &v4).unwrap(), "203.0.113.5:8080".parse().unwrap());
        let mut v6 = [0u8; 36];
        v6[15] = 1;
        v6[32..34].copy_from_slice(&443u16.to_be_bytes());
        assert_eq!(parse_source(0x21, &v6).unwrap(), "[::1]:443".parse().unwrap());
        assert!(parse_source(0x11, &v4[..8]).is_err());
        assert!(parse_source(0x31, &v4).is_err(), "UNIX sockets carry no client address");
    }
}
