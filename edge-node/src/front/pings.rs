//! A limit on the PINGs an HTTP/2 client sends. hyper answers every PING itself and offers no
//! limit, so the frames are counted here, from the bytes the connection reads: the 24-byte
//! preface, then 9-byte frame headers (length, type, flags) and payloads skipped by length.

use std::time::{Duration, Instant};

/// The most PINGs (not counting ACKs) a connection may send in a minute: ten a second on
/// average, far above what keep-alive or bandwidth probing needs.
pub const MAX_PINGS_PER_MINUTE: u32 = 600;

const PREFACE_LEN: usize = 24;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// The frames of one HTTP/2 connection as they are read.
pub struct PingCount {
    preface_left: usize,
    header: [u8; 9],
    have: usize,
    payload_left: usize,
    window: Instant,
    in_window: u32,
}

impl Default for PingCount {
    fn default() -> Self {
        PingCount {
            preface_left: PREFACE_LEN,
            header: [0; 9],
            have: 0,
            payload_left: 0,
            window: Instant::now(),
            in_window: 0,
        }
    }
}

impl PingCount {
    /// Takes the next bytes read; whether the client is now over its PINGs for the minute.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface_left > 0 || self.payload_left > 0 {
                let left = if self.preface_left > 0 {
                    &mut self.preface_left
                } else {
                    &mut self.payload_left
                };
                let n = (*left).min(bytes.len());
                *left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < 9 {
                break;
            }
            self.have = 0;
            let h = self.header;
            self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            if h[3] == PING && h[4] & ACK == 0 && self.ping() {
                return true;
            }
        }
        false
    }

    fn ping(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(60) {
            self.window = Instant::now();
            self.in_window = 0;
        }
        self.in_window += 1;
        self.in_window > MAX_PINGS_PER_MINUTE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    const PING_FRAME: [u8; 17] = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    const PING_ACK: [u8; 17] = [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];

    #[test]
    fn pings_are_counted_across_any_split_of_the_bytes() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&SETTINGS);
        // A DATA frame whose payload looks like a PING header must not count.
        bytes.extend_from_slice(&[0, 0, 17, 0, 0, 0, 0, 0, 1]);
        bytes.extend_from_slice(&PING_FRAME);
        for _ in 0..MAX_PINGS_PER_MINUTE {
            bytes.extend_from_slice(&PING_FRAME);
            bytes.extend_from_slice(&PING_ACK);
        }
        for split in [1, 7, 9, 17, 4096] {
            let mut count = PingCount::default();
            let over: Vec<bool> = bytes.chunks(split).map(|c| count.feed(c)).collect();
            assert!(!over.iter().any(|o| *o), "split {split}: ACKs and payloads do not count");
            assert_eq!(count.in_window, MAX_PINGS_PER_MINUTE);
            assert!(count.feed(&PING_FRAME), "split {split}: one more is over");
        }
    }
}
