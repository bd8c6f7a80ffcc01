//! `render spend`: the bill of every run (or those since a date, of a project), and the money
//! lines `submit` and `nightly` say before sending and at the end.

use super::{FormatChoice, GlobalArgs, Outcome};
use crate::report::spend::{Bill, BillFormat, print_about_to_spend, print_bill};
use render_pipeline::ledger::{Estimate, Ledger, Planned};
use render_pipeline::plan::Plan;
use render_wire::money::Usd;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only runs started on or after this day (YYYY-MM-DD, UTC) or moment (RFC 3339).
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    pub since: Option<i64>,
    /// Only the runs of this project.
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    // Reading the bill changes nothing: no ledger means no runs, not a new state directory.
    let runs = match super::state::existing_ledger(global)? {
        Some(ledger) => ledger.spend(args.since, args.project.as_deref())?,
        None => Vec::new(),
    };
    let format = match global.format_choice {
        FormatChoice::Human => BillFormat::Table,
        FormatChoice::Json => BillFormat::Json,
        FormatChoice::Csv => BillFormat::Csv,
    };
    print_bill(&Bill { runs }, format)?;
    Ok(Outcome::Success)
}

/// `--since`: a day (midnight UTC) or an RFC 3339 moment, as seconds since the epoch.
fn parse_since(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|moment| moment.timestamp())
        .map_err(|_| {
            format!(
                "`{text}` is not a date: expected YYYY-MM-DD or RFC 3339 (2026-12-01T18:00:00Z)"
            )
        })
}

/// Before a night sends anything: remembers each key's standard price (so the bill knows what
/// Batch saved) and says what is about to be spent. Human output only; JSON carries it at the end.
pub fn before_sending(plan: &Plan, ledger: &mut Ledger, human: bool) -> anyhow::Result<Estimate> {
    let planned: Vec<Planned> = plan
        .requests
        .iter()
        .map(|r| Planned {
            key: r.key,
            cost: r.cost(),
            standard: r.standard_cost,
            cached: r.cached,
        })
        .collect();
    let prices: Vec<_> = planned.iter().map(|p| (p.key, p.standard)).collect();
    ledger.record_standard_prices(&prices)?;
    let estimate = ledger.estimate(&planned)?;
    if human {
        print_about_to_spend(&estimate)?;
    }
    Ok(estimate)
}

/// The end of a night: what the run has committed at its providers.
pub fn spent(ledger: &Ledger, run_id: &str) -> anyhow::Result<Usd> {
    Ok(ledger.committed(run_id)?)
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_a_day_or_a_moment() {
        assert_eq!(parse_since("1970-01-02"), Ok(86_400));
        assert_eq!(parse_since("1970-01-01T01:00:00Z"), Ok(3_600));
        assert_eq!(parse_since("1970-01-01T02:00:00+01:00"), Ok(3_600));
        for bad in ["yesterday", "2026-13-01", "2026-02-30", "", "01/12/2026"] {
            let err = parse_since(bad).unwrap_err();
            assert!(err.contains("YYYY-MM-DD"), "{bad}: {err}");
        }
    }
}
