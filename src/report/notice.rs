//! The banners a run's page opens with: when the run is incomplete (`"complete": false` in its
//! summary: killed, or still running), so its figures are not mistaken for a finished run's; when
//! it is a merge of shards (`fleetstorm merge`), which shards.

use maud::{Markup, html};

use crate::results::Summary;

/// Inline style: the banner stands out without touching the page's shared CSS.
const STYLE: &str = "background:#fff4e5;border:2px solid #e65100;border-radius:8px;padding:12px 16px;margin:0 0 18px;color:#7a2e00";

/// The banner, or nothing for a complete run.
pub(super) fn incomplete_banner(s: &Summary) -> Markup {
    html! {
        @if !s.complete {
            div #incomplete role="alert" style=(STYLE) {
                strong { "Incomplete run. " }
                "This run ended without writing its final summary (it was killed, or is still running): "
                "the figures below are those of its last summary, "
                (format!("{:.0} s", s.duration_s))
                " into the run, and the files may end up to a second earlier."
            }
        }
    }
}

/// What a merged summary merges: "merge of 4 shards" (and the missing ones); `None` for a run.
pub(super) fn merge_note(s: &Summary) -> Option<String> {
    if s.merged_from.is_empty() {
        return None;
    }
    let n = s.merged_from.len();
    let mut text = format!("merge of {n} shard{}", if n == 1 { "" } else { "s" });
    if !s.shards_missing.is_empty() {
        let missing: Vec<String> = s.shards_missing.iter().map(u32::to_string).collect();
        text.push_str(&format!(" (missing: {})", missing.join(", ")));
    }
    Some(text)
}

/// The merge banner: which folders (and shards) the page merges, or nothing for a run.
pub(super) fn merge_banner(s: &Summary) -> Markup {
    html! {
        @if let Some(note) = merge_note(s) {
            div #merge role="note" style="background:#e8f1fb;border:2px solid #1f5fa8;border-radius:8px;padding:12px 16px;margin:0 0 18px;color:#123a66" {
                strong { "This page is a " (note) ". " }
                "Histograms were added interval by interval, counts summed and thresholds evaluated again on the merged figures. Merged folders: "
                @for (i, m) in s.merged_from.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (m.dir) }
                    @if let Some(shard) = &m.shard { " (shard " (shard.index) "/" (shard.count) ")" }
                }
                "."
            }
        }
    }
}
