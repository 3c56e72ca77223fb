//! Every relative link and `#anchor` in the documentation resolves, as GitHub renders it:
//! README.md, CHANGELOG.md, docs/**/*.md and benches/results/*.md. A link's file (or folder)
//! must exist, and its anchor must be the slug of a heading of the page it names (GitHub's
//! rules: lower case, punctuation dropped, spaces to hyphens, repeats numbered `-1`, `-2`, ...).
//! Links to other sites are not fetched (tests talk only to loopback).
//!
//! The Markdown is read with pulldown-cmark, as a renderer reads it: a link in a table cell
//! counts, a bracket inside a code span does not, which a regex would get wrong.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// GitHub's anchor of a heading's text (github-slugger without the repeat counter): lower
/// case; letters, digits, `-` and `_` kept, a space becomes `-`, everything else dropped.
fn slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page: its headings' slugs, a repeated slug numbered as GitHub numbers it.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                let mut anchor = base.clone();
                while seen.contains_key(&anchor) {
                    let n = seen.get_mut(&base).map_or(1, |n| {
                        *n += 1;
                        *n
                    });
                    anchor = format!("{base}-{n}");
                }
                seen.insert(anchor.clone(), 0);
                out.insert(anchor);
            }
            _ => {}
        }
    }
    out
}

/// Every link and image destination of a page, with its line.
fn links(markdown: &str) -> Vec<(String, usize)> {
    Parser::new_ext(markdown, options())
        .into_offset_iter()
        .filter_map(|(event, range)| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                let line = markdown[..range.start].matches('\n').count() + 1;
                Some((dest_url.to_string(), line))
            }
            _ => None,
        })
        .collect()
}

/// `https:`, `mailto:`, ...: a link to somewhere else, not checked here.
fn has_scheme(dest: &str) -> bool {
    dest.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    })
}

/// `a/./b/../c` as `a/c`, without asking the file system (a missing file stays missing).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The broken links of the page `page` (a path below `root`), each as "page:line: link: why".
fn broken_links(root: &Path, page: &Path, markdown: &str) -> Vec<String> {
    let own = anchors(markdown);
    let shown = page
        .strip_prefix(root)
        .unwrap_or(page)
        .display()
        .to_string();
    let mut broken = Vec::new();
    for (dest, line) in links(markdown) {
        if has_scheme(&dest) {
            continue;
        }
        let (file, anchor) = dest.split_once('#').unwrap_or((&dest, ""));
        let mut why = None;
        if file.is_empty() {
            if !own.contains(anchor) {
                why = Some(format!("no heading #{anchor} on this page"));
            }
        } else {
            let target = if let Some(from_root) = file.strip_prefix('/') {
                root.join(from_root)
            } else {
                normalise(&page.parent().unwrap_or(root).join(file))
            };
            if !target.starts_with(root) {
                why = Some("outside the repository".to_string());
            } else if !target.exists() {
                why = Some(format!("{file} does not exist"));
            } else if !anchor.is_empty() {
                if target.extension().is_some_and(|e| e == "md") {
                    let text = std::fs::read_to_string(&target).unwrap_or_default();
                    if !anchors(&text).contains(anchor) {
                        why = Some(format!("no heading #{anchor} in {file}"));
                    }
                } else {
                    why = Some(format!("#{anchor} into {file}, which has no headings"));
                }
            }
        }
        if let Some(why) = why {
            broken.push(format!("{shown}:{line}: ({dest}): {why}"));
        }
    }
    broken
}

/// The Markdown files under `dir`, sorted.
fn markdown_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_relative_link_and_anchor_of_the_documentation_resolves() {
    let root = Path::new(ROOT);
    let mut pages = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    pages.extend(markdown_under(&root.join("docs")));
    pages.extend(markdown_under(&root.join("benches/results")));
    assert!(
        pages.len() > 10,
        "the user guide under docs/ is missing: {pages:?}"
    );
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text =
            std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        checked += links(&text).len();
        broken.extend(broken_links(root, page, &text));
    }
    assert!(
        checked > 100,
        "only {checked} links found: is the parser reading the pages?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn slugs_should_follow_githubs_rules() {
    assert_eq!(
        slug("What a run created: `created.csv`"),
        "what-a-run-created-createdcsv"
    );
    assert_eq!(
        slug("A 1,000,000-device plan on paper"),
        "a-1000000-device-plan-on-paper"
    );
    assert_eq!(
        slug("The control plane (AWS IoT REST API)"),
        "the-control-plane-aws-iot-rest-api"
    );
    assert_eq!(
        slug("MQTT 3.1.1 and MQTT 5, JSON and CBOR"),
        "mqtt-311-and-mqtt-5-json-and-cbor"
    );
    assert_eq!(slug("`aws setup`"), "aws-setup");
    assert_eq!(
        slug("snake_case and Ünïcode — dash"),
        "snake_case-and-ünïcode--dash"
    );
    let page = "# Title\n\n## Same\n\n## Same\n\n### `code` heading\n\n## Same\n";
    let found: Vec<_> = anchors(page).into_iter().collect();
    assert_eq!(found, ["code-heading", "same", "same-1", "same-2", "title"]);
}

#[test]
fn links_should_be_found_where_a_renderer_finds_them_and_nowhere_else() {
    let page = "[a](a.md) and `[not](code.md)`\n\n| t |\n| --- |\n| [cell](c.md#x) |\n\n\
                ```sh\n[no](block.md)\n```\n\n![img](i.png) <https://example.com>\n";
    let found: Vec<_> = links(page).into_iter().map(|(d, _)| d).collect();
    assert_eq!(found, ["a.md", "c.md#x", "i.png", "https://example.com"]);
    assert!(has_scheme("https://example.com") && has_scheme("mailto:x@y"));
    assert!(!has_scheme("docs/a.md") && !has_scheme("#x") && !has_scheme("a.md#x:y"));
}

#[test]
fn broken_links_and_anchors_should_be_named_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs/sub")).unwrap();
    std::fs::write(
        root.join("docs/target.md"),
        "# Target\n\n## What a run created: `created.csv`\n",
    )
    .unwrap();
    std::fs::write(root.join("data.csv"), "a,b\n").unwrap();
    let page = root.join("docs/sub/page.md");
    let good = "# Page\n\n## Here\n\n\
                [file](../target.md) [anchor](../target.md#what-a-run-created-createdcsv) \
                [own](#here) [folder](../../docs/) [root](/data.csv) [ext](https://example.com/x#y)\n";
    assert_eq!(broken_links(root, &page, good), Vec::<String>::new());

    let bad = "# Page\n\n\
               [gone](../missing.md)\n\
               [anchor](../target.md#what-a-run-created)\n\
               [own](#nowhere)\n\
               [csv](../../data.csv#L1x)\n\
               [out](../../../elsewhere.md)\n";
    let found = broken_links(root, &page, bad);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert!(
        found[0].starts_with("docs/sub/page.md:3: (../missing.md)"),
        "{found:#?}"
    );
    assert!(found[0].contains("does not exist"), "{found:#?}");
    assert!(
        found[1].starts_with("docs/sub/page.md:4:")
            && found[1].contains("no heading #what-a-run-created in ../target.md"),
        "{found:#?}"
    );
    assert!(
        found[2].contains("no heading #nowhere on this page"),
        "{found:#?}"
    );
    assert!(found[3].contains("which has no headings"), "{found:#?}");
    assert!(found[4].contains("outside the repository"), "{found:#?}");
}

/// The first ```` ```text ```` block after the line `heading` in `text`, without its fences.
fn text_block_after(text: &str, heading: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|l| l.trim() != heading);
    lines.find(|l| l.trim() == "```text")?;
    let block: Vec<&str> = lines.take_while(|l| l.trim() != "```").collect();
    Some(block.join("\n"))
}

/// The module map is written once, in `src/lib.rs`'s opening comment; the architecture page
/// quotes it as it is instead of describing the layers again in other words.
#[test]
fn the_architecture_page_quotes_the_module_map_of_lib_rs() {
    let root = Path::new(ROOT);
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let doc: String = lib
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .flat_map(|l| [l, "\n"])
        .collect();
    let map = text_block_after(&doc, "# Module map").expect("src/lib.rs has no module map");
    let page = std::fs::read_to_string(root.join("docs/developer/architecture.md")).unwrap();
    let quoted = text_block_after(&page, "## Module map")
        .expect("docs/developer/architecture.md quotes no module map");
    assert_eq!(
        quoted, map,
        "docs/developer/architecture.md's module map differs from src/lib.rs's"
    );
}

#[test]
fn a_text_block_should_be_found_under_its_heading_only() {
    let page =
        "# A\n\n```text\nnot this\n```\n\n## Module map\n\nIntro.\n\n```text\n1 a\n2 b\n```\n";
    assert_eq!(
        text_block_after(page, "## Module map").as_deref(),
        Some("1 a\n2 b")
    );
    assert_eq!(text_block_after(page, "## Nowhere"), None);
}
