//! A WebSocket load: N sockets to URL, each sending a 32-byte text message and waiting for
//! its echo, for a number of seconds; prints the echoes per second over all sockets. With
//! `--idle`, opens the N sockets, prints "open", and holds them until stdin closes.
//!
//! Usage: ws-load URL SOCKETS SECONDS [--idle]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("a URL").clone();
    let sockets: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    let idle = args.iter().any(|a| a == "--idle");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async move {
        let mut open = Vec::with_capacity(sockets);
        for _ in 0..sockets {
            let (socket, _) =
                tokio_tungstenite::connect_async(url.as_str()).await.expect("a socket");
            open.push(socket);
        }
        if idle {
            println!("open");
            let mut line = String::new();
            let _ = tokio::io::AsyncBufReadExt::read_line(
                &mut tokio::io::BufReader::new(tokio::io::stdin()),
                &mut line,
            )
            .await;
            return;
        }
        let echoes = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(seconds);
        let message = "x".repeat(32);
        let tasks: Vec<_> = open
            .into_iter()
            .map(|mut socket| {
                let echoes = echoes.clone();
                let message = message.clone();
                tokio::spawn(async move {
                    while Instant::now() < until {
                        if socket.send(Message::text(message.clone())).await.is_err() {
                            break;
                        }
                        match socket.next().await {
                            Some(Ok(Message::Text(_))) => echoes.fetch_add(1, Ordering::Relaxed),
                            _ => break,
                        };
                    }
                    let _ = socket.close(None).await;
                })
            })
            .collect();
        let started = Instant::now();
        for task in tasks {
            let _ = task.await;
        }
        let rate = echoes.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        println!("{rate:.0}");
    });
}
