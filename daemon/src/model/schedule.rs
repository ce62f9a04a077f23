//! `snapshots.schedule`: LXD's cron syntax (five fields: minute, hour, day of month, month,
//! day of week; `*`, `*/n`, `a-b`, `a-b/n` and lists; `@hourly`, `@daily`, `@midnight`,
//! `@weekly`, `@monthly`, `@annually`, `@yearly`), checked by silod once a minute.

use time::OffsetDateTime;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    fields: [Vec<u32>; 5],
}

const RANGES: [(u32, u32, &str); 5] = [
    (0, 59, "minute"),
    (0, 23, "hour"),
    (1, 31, "day of month"),
    (1, 12, "month"),
    // Sunday is 0 or 7, as cron allows; 7 is folded into 0 once the field is expanded.
    (0, 7, "day of week"),
];

fn field(text: &str, (lo, hi, what): (u32, u32, &str)) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step {s:?} in the {what} field"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let p = |x: &str| {
                x.parse::<u32>()
                    .map_err(|_| format!("{x:?} is not a number in the {what} field"))
            };
            (p(a)?, p(b)?)
        } else {
            let v = range
                .parse::<u32>()
                .map_err(|_| format!("{range:?} is not a number in the {what} field"))?;
            (v, if step > 1 { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{part:?} is outside {lo}-{hi} in the {what} field"));
        }
        let days = what == "day of week";
        out.extend(
            (a..=b)
                .step_by(step as usize)
                .map(|x| if days { x % 7 } else { x }),
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

impl Schedule {
    /// Parses a schedule; several may be given separated by commas in LXD only for
    /// `@`-aliases, so a leading `@` is an alias.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let s = s.trim();
        let text = match s {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@annually" | "@yearly" => "0 0 1 1 *",
            s if s.starts_with('@') => return Err(format!("unknown schedule alias {s:?}")),
            s => s,
        };
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "{s:?} is not a schedule: five fields (minute hour day-of-month month day-of-week) or an @alias"
            ));
        }
        let mut fields: [Vec<u32>; 5] = Default::default();
        for (i, p) in parts.iter().enumerate() {
            fields[i] = field(p, RANGES[i])?;
        }
        Ok(Schedule { fields })
    }

    /// Whether the schedule fires in the minute `t` falls in.
    pub fn matches(&self, t: OffsetDateTime) -> bool {
        let v = [
            u32::from(t.minute()),
            u32::from(t.hour()),
            u32::from(t.day()),
            u32::from(u8::from(t.month())),
            u32::from(t.weekday().number_days_from_sunday()),
        ];
        self.fields.iter().zip(v).all(|(f, x)| f.contains(&x))
    }
}

/// The name `snapshots.pattern` gives (LXD's `{{ creation_date|date:'...' }}` is not
/// supported; `%d` is the first free number, as LXD's default `snap%d`).
pub fn snapshot_name(pattern: &str, taken: &[String]) -> String {
    let pattern = if pattern.is_empty() {
        "snap%d"
    } else {
        pattern
    };
    if !pattern.contains("%d") {
        return if taken.iter().any(|t| t == pattern) {
            format!("{pattern}-{}", taken.len())
        } else {
            pattern.to_string()
        };
    }
    (0..)
        .map(|n| pattern.replacen("%d", &n.to_string(), 1))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| "snap".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u8, d: u8, h: u8, mi: u8) -> OffsetDateTime {
        time::Date::from_calendar_date(y, time::Month::try_from(mo).expect("m"), d)
            .expect("date")
            .with_hms(h, mi, 0)
            .expect("time")
            .assume_utc()
    }

    #[test]
    fn cron_fields() {
        let s = Schedule::parse("*/15 2-4 * * 1-5").expect("parse");
        assert!(s.matches(at(2026, 11, 30, 3, 45)), "a Monday");
        assert!(!s.matches(at(2026, 11, 29, 3, 45)), "a Sunday");
        assert!(!s.matches(at(2026, 11, 30, 5, 0)));
        assert!(!s.matches(at(2026, 11, 30, 3, 44)));
        let d = Schedule::parse("@daily").expect("alias");
        assert!(d.matches(at(2026, 1, 1, 0, 0)) && !d.matches(at(2026, 1, 1, 0, 1)));
        // 7 is Sunday and only Sunday: it used to widen to the whole week.
        let sun = Schedule::parse("* * * * 7").expect("sunday");
        assert!(sun.matches(at(2026, 11, 29, 1, 1)));
        assert!(!sun.matches(at(2026, 11, 30, 1, 1)), "a Monday");
        assert!(!sun.matches(at(2026, 12, 5, 1, 1)), "a Saturday");
        let weekend = Schedule::parse("0 0 * * 6-7").expect("weekend");
        assert!(weekend.matches(at(2026, 12, 5, 0, 0)) && weekend.matches(at(2026, 12, 6, 0, 0)));
        assert!(!weekend.matches(at(2026, 12, 7, 0, 0)), "a Monday");
        let every = Schedule::parse("0 0 * * *").expect("every day");
        assert!(every.matches(at(2026, 12, 6, 0, 0)) && every.matches(at(2026, 12, 7, 0, 0)));
        assert!(Schedule::parse("* * * * 8").is_err());
        for bad in [
            "",
            "* * * *",
            "61 * * * *",
            "*/0 * * * *",
            "a * * * *",
            "@sometimes",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(snapshot_name("", &[]), "snap0");
        assert_eq!(snapshot_name("auto-%d", &["auto-0".into()]), "auto-1");
        assert_eq!(snapshot_name("nightly", &[]), "nightly");
    }
}
