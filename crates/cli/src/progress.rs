//! Progress of `--wait`, for people at a terminal: a line for each state a
//! resource reaches, with the time since the wait began, under a spinner that
//! counts the seconds. Nothing for programs: with `-o json` or `-o csv`, or when
//! stderr is not a terminal, it draws nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::Output;

pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    /// The last state told of each resource.
    told: HashMap<String, String>,
}

impl Progress {
    /// Starts showing a wait for `what` (e.g. "3 instances to be running").
    pub fn start(output: Output, what: &str) -> Progress {
        // The stderr target hides itself when stderr is not a terminal.
        let target = match output {
            Output::Table => ProgressDrawTarget::stderr(),
            Output::Json | Output::Csv => ProgressDrawTarget::hidden(),
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} waiting for {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar,
            started: Instant::now(),
            told: HashMap::new(),
        }
    }

    /// Tells that `id` is now in `state`, once per state reached.
    pub fn reached(&mut self, id: &str, state: &str) {
        if self.told.get(id).is_some_and(|s| s == state) {
            return;
        }
        self.told.insert(id.to_string(), state.to_string());
        let secs = self.started.elapsed().as_secs_f64();
        self.bar.println(format!("{id} {state} after {secs:.1} s"));
    }

    /// Changes what the spinner says it waits for.
    pub fn waiting_for(&self, what: String) {
        self.bar.set_message(what);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
