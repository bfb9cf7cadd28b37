//! Progress display on stderr, shown only to a person at a terminal.
//!
//! A bar appears only when stderr is a terminal and the command's data stream is not (a
//! consumer printing records to the terminal would interleave with the bar). Scripts, CI
//! and tests, whose stderr is a pipe or file, always get a hidden bar.
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether a bar may be drawn, given whether the data stream is a terminal.
pub fn wanted(data_stream_is_terminal: bool) -> bool {
    std::io::stderr().is_terminal() && !data_stream_is_terminal
}

/// A spinner counting records, e.g. `⠁ 1,204 records produced (1,180 acked)`.
pub fn records(show: bool, verb: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {human_pos} records {prefix} {msg}")
        .expect("the template is a valid constant");
    bar.set_style(style);
    bar.set_prefix(verb);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A spinner with a message, e.g. while the broker starts.
pub fn spinner(show: bool, message: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
