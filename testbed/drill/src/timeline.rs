//! The story of a drill run for people: steps with the time they completed, printed on stdout as
//! they happen (the full logs go to a file, see `main.rs`).

use std::time::{Duration, Instant};

/// Steps with the time they completed, printed as they happen.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    pub steps: Vec<(Duration, String)>,
    /// Print each step when it is recorded.
    pub live: bool,
}

impl Timeline {
    pub fn new(live: bool) -> Self {
        Timeline {
            start: Instant::now(),
            steps: Vec::new(),
            live,
        }
    }
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    pub fn mark(&mut self, what: impl Into<String>) {
        let at = self.start.elapsed();
        let what = what.into();
        if self.live {
            println!("{}", Self::line(at, &what));
        }
        self.steps.push((at, what));
    }
    /// A step that failed: printed at once (live or not), so the reader sees where it stopped.
    pub fn fail(&mut self, what: &str) {
        let at = self.start.elapsed();
        let what = format!("FAILED: {what}");
        println!("{}", Self::line(at, &what));
        self.steps.push((at, what));
    }
    fn line(at: Duration, what: &str) -> String {
        format!("  [{:>7.1}s] {what}", at.as_secs_f64())
    }
    pub fn render(&self) -> String {
        self.steps
            .iter()
            .map(|(at, w)| Self::line(*at, w))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
