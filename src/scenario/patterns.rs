//! Per-device parameter and client-ID generators: `{seq}`, `{seq:06}`, `{uuid}`, `{pick:a=3,b=1}`.

/// A parameter or client-ID pattern: literal text with `{seq}`, `{seq:06}`, `{uuid}`,
/// `{pick:a=3,b=1}` (weighted choice) and `{{`/`}}` escapes.
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

    /// Render for device number `seq` with the run's random source.
    pub fn render(&self, seq: u64, rng: &mut impl rand::Rng) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
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
            "unknown generator {{{other}}} (known: {{seq}}, {{seq:06}}, {{uuid}}, {{pick:a=3,b=1}})"
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
}
