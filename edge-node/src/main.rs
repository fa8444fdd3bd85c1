//! `edge-node`: run a node, or one function for local development. The subcommands are in
//! `cli/`; the node itself is the library (`lib.rs`).

mod cli;

#[global_allocator]
static ALLOCATOR: edge_node::Allocator = edge_node::ALLOCATOR;

fn main() -> std::process::ExitCode {
    cli::run()
}
