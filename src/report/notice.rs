//! The banner a run's page opens with when the run is incomplete (`"complete": false` in its
//! summary: killed, or still running), so its figures are not mistaken for a finished run's.

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
