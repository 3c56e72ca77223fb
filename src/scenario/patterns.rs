//! Per-device parameter and client-ID generators: `{seq}`, `{seq:06}`, `{uuid}`, `{pick:a=3,b=1}`,
//! `{run}`.
//!
//! `{run}` is the run ID: random per `fleetstorm run` (not derived from the seed), the same for
//! every device and variant of that run, so thing names of repeated runs never collide.

/// A parameter or client-ID pattern: literal text with `{seq}`, `{seq:06}`, `{uuid}`,
/// `{pick:a=3,b=1}` (weighted choice), `{run}` (the run ID, see [`Pattern::bind_run`]) and
/// `{{`/`}}` escapes.
#[derive(Debug, Clone)]
pub struct Pattern {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Seq {
        width: usize,
    },
    Uuid,
    Pick {
        choices: Vec<(String, u32)>,
        total: u32,
    },
    /// The run ID; replaced by a literal in [`Pattern::bind_run`].
    Run,
}

/// Characters of a run ID: RFC 4648 base32, lowercase (valid in thing names and client IDs).
const RUN_ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A fresh run ID: 6 lowercase base32 characters (30 bits) from the operating system's random
/// source, deliberately not from the scenario's seed: the same scenario run twice must get two
/// IDs, or the second run would try to register the first run's thing names.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 6];
    rand::fill(&mut bytes);
    run_id_from_bytes(&bytes)
}

/// A run ID made of `bytes` (one character of 5 bits per byte).
pub fn run_id_from_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| char::from(RUN_ID_ALPHABET[usize::from(b & 31)]))
        .collect()
}

/// The longest run ID `--run-id` accepts.
pub const MAX_RUN_ID: usize = 32;

/// Whether `id` can be a run ID (`--run-id`): 1 to [`MAX_RUN_ID`] lowercase base32 characters,
/// like the generated ones, so it is valid in thing names and client IDs.
pub fn valid_run_id(id: &str) -> bool {
    (1..=MAX_RUN_ID).contains(&id.len()) && id.bytes().all(|c| RUN_ID_ALPHABET.contains(&c))
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let end = text[i..]
                        .find('}')
                        .ok_or_else(|| format!("unclosed '{{' at column {}", i + 1))?;
                    let spec = &text[i + 1..i + end];
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(parse_generator(spec)?);
                    while chars.peek().is_some_and(|(j, _)| *j <= i + end) {
                        chars.next();
                    }
                }
                '}' => return Err(format!("unmatched '}}' at column {}", i + 1)),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Pattern { parts })
    }

    /// This pattern with `{run}` replaced by `run_id` (done once per run, not per device).
    pub fn bind_run(&self, run_id: &str) -> Pattern {
        let parts = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Run => Part::Literal(run_id.to_string()),
                other => other.clone(),
            })
            .collect();
        Pattern { parts }
    }

    /// Whether the pattern uses `{run}`.
    pub fn uses_run(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Run))
    }

    /// Render for device number `seq` with the run's random source.
    pub fn render(&self, seq: u64, rng: &mut impl rand::Rng) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                // Unbound: the text as written, so a forgotten `bind_run` is visible.
                Part::Run => out.push_str("{run}"),
                Part::Seq { width } => out.push_str(&format!("{seq:0width$}")),
                Part::Uuid => {
                    let b: [u8; 16] = random_bytes(rng);
                    let h = hex::encode(b);
                    out.push_str(&format!(
                        "{}-{}-4{}-{:x}{}-{}",
                        &h[0..8],
                        &h[8..12],
                        &h[13..16],
                        (b[8] & 0x3) | 0x8,
                        &h[17..20],
                        &h[20..32]
                    ));
                }
                Part::Pick { choices, total } => {
                    let mut x = (rng.next_u32() % total) as i64;
                    for (value, weight) in choices {
                        x -= i64::from(*weight);
                        if x < 0 {
                            out.push_str(value);
                            break;
                        }
                    }
                }
            }
        }
        out
    }
}

fn random_bytes<const N: usize>(rng: &mut impl rand::Rng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

fn parse_generator(spec: &str) -> Result<Part, String> {
    let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match name {
        "seq" => {
            let width = if arg.is_empty() {
                0
            } else {
                arg.parse()
                    .map_err(|_| format!("{{seq:{arg}}}: width must be a number like 06"))?
            };
            Ok(Part::Seq { width })
        }
        "uuid" if arg.is_empty() => Ok(Part::Uuid),
        "run" if arg.is_empty() => Ok(Part::Run),
        "pick" => {
            let mut choices = Vec::new();
            for item in arg.split(',') {
                let (value, weight) = match item.rsplit_once('=') {
                    Some((v, w)) => (
                        v,
                        w.trim().parse::<u32>().map_err(|_| {
                            format!("{{pick}}: weight of {v:?} must be a whole number")
                        })?,
                    ),
                    None => (item, 1),
                };
                if weight > 0 {
                    choices.push((value.trim().to_string(), weight));
                }
            }
            let total: u32 = choices.iter().map(|(_, w)| *w).sum();
            if total == 0 {
                return Err("{pick:...}: needs at least one choice with a positive weight".into());
            }
            Ok(Part::Pick { choices, total })
        }
        other => Err(format!(
            "unknown generator {{{other}}} (known: {{seq}}, {{seq:06}}, {{uuid}}, {{pick:a=3,b=1}}, {{run}})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn patterns_render_sequences_uuids_and_weighted_picks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let p = Pattern::parse("123456{seq:06}").unwrap();
        assert_eq!(p.render(42, &mut rng), "123456000042");
        let u = Pattern::parse("FPC-device-{uuid}")
            .unwrap()
            .render(0, &mut rng);
        assert_eq!(u.len(), "FPC-device-".len() + 36, "{u}");
        assert_eq!(&u["FPC-device-".len() + 14..][..1], "4");
        let pick = Pattern::parse("{pick:Berlin=3,Seattle=1}").unwrap();
        let berlin = (0..4000)
            .filter(|_| pick.render(0, &mut rng) == "Berlin")
            .count();
        assert!((2700..3300).contains(&berlin), "{berlin}");
        assert_eq!(
            Pattern::parse("a{{b}}").unwrap().render(0, &mut rng),
            "a{b}"
        );
        assert!(
            Pattern::parse("{nope}")
                .unwrap_err()
                .contains("unknown generator")
        );
        assert!(Pattern::parse("{seq").is_err());
    }

    #[test]
    fn run_ids_are_short_base32_and_differ_per_run_and_bind_into_patterns() {
        let a = new_run_id();
        let b = new_run_id();
        assert_eq!(a.len(), 6);
        assert!(
            a.bytes().all(|c| RUN_ID_ALPHABET.contains(&c)),
            "{a} is lowercase base32"
        );
        // 30 random bits each: two equal IDs would mean the source is not random.
        assert_ne!(a, b);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = Pattern::parse("fs-{run}-{seq:03}").unwrap();
        assert!(p.uses_run());
        assert!(!Pattern::parse("x{seq}").unwrap().uses_run());
        assert_eq!(p.bind_run("abc234").render(7, &mut rng), "fs-abc234-007");
        assert_eq!(p.render(7, &mut rng), "fs-{run}-007");
        assert!(Pattern::parse("{run:x}").is_err());
        assert!(valid_run_id(&a) && valid_run_id("job7"));
        for bad in [
            "",
            "Job7",
            "job-7",
            "job1",
            "a b",
            &"a".repeat(MAX_RUN_ID + 1),
        ] {
            assert!(!valid_run_id(bad), "{bad:?}");
        }
    }
}
