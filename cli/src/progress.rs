//! Progress bars on standard error for long commands (hidden when it is not a terminal):
//! rows with the bytes involved for export, import and sync, bytes for downloads.

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// A bar counting rows out of a known total; `msg` names the work and its bytes.
pub fn rows(what: &str, bytes: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} rows ({eta})").expect("template").progress_chars("=> "),
    );
    bar.set_message(match bytes {
        Some(b) => format!("{what} {}", HumanBytes(b)),
        None => what.to_owned(),
    });
    bar
}

/// A spinner counting rows of unknown total.
pub fn rows_open(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}: {human_pos} changes ({elapsed})").expect("template"));
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A bar counting bytes (a spinner until the total is known).
pub fn bytes(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// The callback that moves `bar` to (done, total); a total of 0 leaves the length alone.
pub fn follow(bar: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    move |done, total| {
        if total != 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
    }
}
