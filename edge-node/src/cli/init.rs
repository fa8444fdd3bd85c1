//! `init`: a new function folder from a template, ready for `dev`, with types for editors.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::BadConfig;

/// The templates `init` knows, each a function that runs as written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Template {
    /// A JavaScript fetch handler (type-checked through JSDoc).
    Hello,
    /// A TypeScript fetch handler reading a JSON body.
    Typescript,
    /// A Hono app (needs `npm install`).
    Hono,
    /// A scheduled handler writing each run to a table.
    Cron,
    /// A producer and consumer of a queue.
    Queue,
}

/// The types of the runtime's handlers, `ctx` and bindings.
const TYPES: &str = include_str!("../../templates/isola.d.ts");
const TSCONFIG: &str = include_str!("../../templates/tsconfig.json");
const GITIGNORE: &str = "node_modules/\n.dev.vars\n";

impl Template {
    /// The files of the template, by path in the folder; `@name@` stands for the name.
    fn files(self) -> Vec<(&'static str, &'static str)> {
        let mut files = match self {
            Template::Hello => vec![
                ("edge.toml", include_str!("../../templates/hello/edge.toml")),
                ("src/index.js", include_str!("../../templates/hello/index.js")),
            ],
            Template::Typescript => vec![
                ("edge.toml", include_str!("../../templates/typescript/edge.toml")),
                ("src/index.ts", include_str!("../../templates/typescript/index.ts")),
            ],
            Template::Hono => vec![
                ("edge.toml", include_str!("../../templates/hono/edge.toml")),
                ("src/index.ts", include_str!("../../templates/hono/index.ts")),
                ("package.json", include_str!("../../templates/hono/package.json")),
            ],
            Template::Cron => vec![
                ("edge.toml", include_str!("../../templates/cron/edge.toml")),
                ("src/index.ts", include_str!("../../templates/cron/index.ts")),
            ],
            Template::Queue => vec![
                ("edge.toml", include_str!("../../templates/queue/edge.toml")),
                ("src/index.ts", include_str!("../../templates/queue/index.ts")),
            ],
        };
        files.extend([
            ("isola.d.ts", TYPES),
            ("tsconfig.json", TSCONFIG),
            (".gitignore", GITIGNORE),
        ]);
        files
    }
}

/// A function name made of a folder's name: lowercase letters, digits and `-`, starting
/// with a letter.
fn name_of(dir: &Path) -> String {
    let base = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut name: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_string();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("fn-{name}").trim_end_matches('-').to_string();
    }
    name.truncate(63);
    name
}

#[allow(clippy::print_stdout, reason = "the command's answer")]
pub fn init(dir: &Path, template: Template, name: Option<String>) -> anyhow::Result<()> {
    let name = name.unwrap_or_else(|| name_of(dir));
    let files: Vec<(PathBuf, String)> = template
        .files()
        .into_iter()
        .map(|(path, text)| (dir.join(path), text.replace("@name@", &name)))
        .collect();
    // What it writes must be a function the node accepts, and nothing is overwritten.
    let edge = &files.iter().find(|(p, _)| p.ends_with("edge.toml")).expect("edge.toml").1;
    if let Err(problems) = config::EdgeConfig::parse(edge, dir) {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(BadConfig(format!("cannot make function `{name}`: {}", list.join("; "))).into());
    }
    let taken: Vec<String> =
        files.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.display().to_string()).collect();
    if !taken.is_empty() {
        return Err(BadConfig(format!(
            "not overwriting what is there: {} (choose an empty folder)",
            taken.join(", ")
        ))
        .into());
    }
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let shown = dir.display();
    println!("made function `{name}` in {shown}");
    if matches!(template, Template::Hono) {
        println!("  npm install --prefix {shown}");
    }
    println!(
        "  edge-node dev {shown}          serve it on http://127.0.0.1:8080/, reloading on change"
    );
    println!("  edge-node deploy {shown} --node URL   deploy it to a node");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_folder() {
        assert_eq!(name_of(Path::new("/tmp/My Api_2")), "my-api-2");
        assert_eq!(name_of(Path::new("/tmp/2fast")), "fn-2fast");
        assert_eq!(name_of(Path::new("/tmp/___")), "fn");
    }

    #[test]
    fn every_template_is_a_valid_function() {
        use clap::ValueEnum;
        for template in Template::value_variants() {
            let files = template.files();
            let edge = files.iter().find(|(p, _)| *p == "edge.toml").unwrap().1;
            let config = config::EdgeConfig::parse(&edge.replace("@name@", "x"), Path::new("."))
                .unwrap_or_else(|p| panic!("{template:?}: {p:?}"));
            assert!(files.iter().any(|(p, _)| Path::new(p) == config.entry), "{template:?}");
        }
    }
}
