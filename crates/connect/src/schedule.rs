//! Schedules: cron patterns read in Norwegian time (Europe/Oslo), so `0 2 * * *` is two at night
//! the year round.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Europe::Oslo;

use crate::ConnectError;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
}

impl Schedule {
    /// A five-field cron pattern (minute hour day month weekday), or `@hourly`, `@daily` and
    /// the like.
    pub fn parse(text: &str) -> Result<Self, ConnectError> {
        let text = text.trim();
        let refused = || {
            ConnectError::invalid(
                "schedule",
                format!("{text:?} is not a schedule: give five fields (minute hour day month weekday), e.g. \"0 2 * * *\""),
            )
        };
        if text.split_whitespace().count() == 6 {
            return Err(refused());
        }
        let cron = croner::Cron::from_str(text).map_err(|_| refused())?;
        Ok(Self { cron })
    }

    /// The first time after `after` the schedule names.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, ConnectError> {
        let local = after.with_timezone(&Oslo);
        let next =
            self.cron.find_next_occurrence(&local, false).map_err(|e| ConnectError::invalid("schedule", format!("no next time: {e}")))?;
        Ok(next.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_read_in_norwegian_time() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        // 2026-07-01 is summer time (UTC+2): two at night is midnight UTC.
        let after = DateTime::parse_from_rfc3339("2026-07-01T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(s.next_after(after).unwrap().to_rfc3339(), "2026-07-02T00:00:00+00:00");
        let winter = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(s.next_after(winter).unwrap().to_rfc3339(), "2026-12-02T01:00:00+00:00");
        assert!(Schedule::parse("*/5 * * * *").is_ok());
        assert!(Schedule::parse("@daily").is_ok());
        for bad in ["", "61 * * * *", "every day", "* * * * * *"] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
    }
}
