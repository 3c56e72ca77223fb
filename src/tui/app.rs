//! Dashboard state built from the aggregator's snapshots and the keys (never from devices).

use std::collections::VecDeque;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::live::Snapshot;

/// Seconds of history kept for the rate chart.
const HISTORY: usize = 600;

/// One point of the rate chart.
#[derive(Debug, Clone, Copy)]
pub(super) struct Point {
    pub(super) t: f64,
    pub(super) offered: f64,
    pub(super) provisioned: f64,
    pub(super) failed: f64,
    pub(super) target: Option<f64>,
}

/// What a key asks of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stop,
    TogglePause,
    Faster,
    Slower,
}

/// Dashboard state.
#[derive(Debug, Default)]
pub struct App {
    pub snapshot: Arc<Snapshot>,
    pub(super) history: VecDeque<Point>,
    /// Index into the snapshot's stages of the stage shown in the percentile view.
    pub selected: usize,
    pub help: bool,
    /// A stop was requested from the keyboard.
    pub stop_requested: bool,
}

impl App {
    /// Take a new snapshot (a new variant starts a fresh history).
    pub fn update(&mut self, s: Arc<Snapshot>) {
        if s.scenario.is_empty() {
            return;
        }
        if s.variant != self.snapshot.variant || s.elapsed < self.snapshot.elapsed {
            self.history.clear();
        }
        self.history.push_back(Point {
            t: s.elapsed.as_secs_f64(),
            offered: s.offered_per_s(),
            provisioned: s.provisioned_per_s(),
            failed: s.failed_per_s(),
            target: s.target_rate,
        });
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.snapshot = s;
    }

    /// Handle a key; returns what the run must do, if anything.
    pub fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind != KeyEventKind::Press {
            return None;
        }
        let stages = self.snapshot.stages.len().max(1);
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.stop_requested = true;
                Some(Action::Stop)
            }
            KeyCode::Char('q') | KeyCode::Char('Q') => {
                self.stop_requested = true;
                Some(Action::Stop)
            }
            KeyCode::Esc if self.help => {
                self.help = false;
                None
            }
            KeyCode::Char('?') | KeyCode::Char('h') => {
                self.help = !self.help;
                None
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => Some(Action::TogglePause),
            KeyCode::Char('+') | KeyCode::Char('=') => Some(Action::Faster),
            KeyCode::Char('-') | KeyCode::Char('_') => Some(Action::Slower),
            KeyCode::Right | KeyCode::Down | KeyCode::Tab | KeyCode::Char('l') => {
                self.selected = (self.selected + 1) % stages;
                None
            }
            KeyCode::Left | KeyCode::Up | KeyCode::BackTab => {
                self.selected = (self.selected + stages - 1) % stages;
                None
            }
            _ => None,
        }
    }
}
