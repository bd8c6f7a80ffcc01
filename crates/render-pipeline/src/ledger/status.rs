//! Where a request (and a direct-lane job, and a batch) stands, and the one string form of each
//! status: the text the ledger stores, which every SQL statement is built from.
//!
//! The stored words never change (ledgers on disk keep them); the sets below name the groups the
//! SQL asks about, so a statement says `status IN {UNCLAIMED}` rather than spelling the words.

use std::str::FromStr;

use super::LedgerError;

/// An enum stored as text: its variants with their words, `as_str` and `FromStr` between the two,
/// `sql` (the quoted literal), `ALL`, and serialization as the same word.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every status, in declaration order.
            pub const ALL: &[$name] = &[$($name::$variant),*];

            /// The word the ledger stores.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }

            /// The stored word as an SQL literal: `'pending'`.
            pub fn sql(self) -> &'static str {
                match self {
                    $( $name::$variant => concat!("'", $text, "'"), )*
                }
            }

            /// A set as an SQL list, for `status IN …`: `('lost', 'failed')`.
            pub fn sql_set(set: &[$name]) -> String {
                let words: Vec<&str> = set.iter().map(|s| s.sql()).collect();
                format!("({})", words.join(", "))
            }
        }

        impl FromStr for $name {
            type Err = LedgerError;

            fn from_str(text: &str) -> Result<$name, LedgerError> {
                match text {
                    $( $text => Ok($name::$variant), )*
                    other => Err(LedgerError::Corrupt(format!(concat!($what, " `{}`"), other))),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

stored_enum! {
    /// Where a request stands. Stored as text so the ledger reads well in `sqlite3`.
    ///
    /// How it moves (see [`RequestStatus::moves_to`], which the tests hold the SQL to):
    ///
    /// | from        | to                              | by                                    |
    /// |-------------|---------------------------------|---------------------------------------|
    /// | (new)       | `Pending`                       | `insert_requests`                     |
    /// | `Pending`   | `Queued`, `Elsewhere`           | a batch or job intent; a claim        |
    /// | `Queued`    | `Submitted`, `Pending`          | confirmed; abandoned                  |
    /// | `Submitted` | `Completed`, `Failed`, `Lost`   | a result; a batch id the provider reused |
    /// | `Submitted` | `Pending`                       | an abandoned job                      |
    /// | `Completed` | `Harvested`, `Failed`, `Lost`   | the download; a later result          |
    /// | `Harvested` | `Queued`, `Pending`             | rendered again (batch; direct lane)   |
    /// | `Failed`    | `Queued`, `Pending`, `Elsewhere`| sent again; a claim                   |
    /// | `Lost`      | `Queued`, `Pending`, `Elsewhere`| sent again; a claim                   |
    /// | `Elsewhere` | `Pending`                       | the claim came back                   |
    ///
    /// Besides: a result (`record_result`) may land on any request not `Harvested` (a late output
    /// file), and a stored video (`record_output`) makes any request `Harvested`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum RequestStatus ("request status") {
        /// Known but not in any batch yet.
        Pending = "pending",
        /// In a batch whose creation is intended but not yet confirmed.
        Queued = "queued",
        /// In a created batch.
        Submitted = "submitted",
        /// Rendered; the video is waiting to be downloaded.
        Completed = "completed",
        /// The video is in the cache.
        Harvested = "harvested",
        /// The provider answered with an error (kept with the request).
        Failed = "failed",
        /// Never rendered or expired before download: resubmittable.
        Lost = "lost",
        /// Claimed in the shared cache by another machine of the studio: waited for, not sent.
        Elsewhere = "elsewhere",
    }
}

impl RequestStatus {
    /// Somebody is rendering it, or it is rendered and waiting for its download: it joins no
    /// other batch.
    pub const IN_FLIGHT: &[RequestStatus] = &[
        RequestStatus::Queued,
        RequestStatus::Submitted,
        RequestStatus::Completed,
        RequestStatus::Elsewhere,
    ];

    /// In flight, or its video is in the cache: it gets no direct-lane job (the direct lane
    /// takes a harvested request back to `Pending` first, by [`Self::SENDABLE`]).
    pub const IN_FLIGHT_OR_DONE: &[RequestStatus] = &[
        RequestStatus::Queued,
        RequestStatus::Submitted,
        RequestStatus::Completed,
        RequestStatus::Harvested,
        RequestStatus::Elsewhere,
    ];

    /// Nobody renders it and it has no video: it may take tonight's lane and price, or be
    /// claimed by another machine (the complement of [`Self::IN_FLIGHT_OR_DONE`]).
    pub const UNCLAIMED: &[RequestStatus] = &[
        RequestStatus::Pending,
        RequestStatus::Lost,
        RequestStatus::Failed,
    ];

    /// May be sent (again), a harvested one rendered anew: put in line for the direct lane
    /// (the complement of [`Self::IN_FLIGHT`]).
    pub const SENDABLE: &[RequestStatus] = &[
        RequestStatus::Pending,
        RequestStatus::Lost,
        RequestStatus::Failed,
        RequestStatus::Harvested,
    ];

    /// Sent in a batch or job that is not finished: what the run has committed but not been
    /// billed for, and what an abandoned job takes back.
    pub const SENT: &[RequestStatus] = &[RequestStatus::Queued, RequestStatus::Submitted];

    /// The provider holds its render, unfinished or not yet downloaded: lost with its batch.
    pub const AT_PROVIDER: &[RequestStatus] = &[RequestStatus::Submitted, RequestStatus::Completed];

    /// Somebody is already rendering (or has rendered) this request: do not submit it again.
    pub fn is_in_flight_or_done(self) -> bool {
        Self::IN_FLIGHT_OR_DONE.contains(&self)
    }

    /// The statuses the ledger moves a request to from this one (the table above; results and
    /// stored videos aside, which may land on any).
    pub fn moves_to(self) -> &'static [RequestStatus] {
        use RequestStatus::*;
        match self {
            Pending => &[Queued, Elsewhere],
            Queued => &[Submitted, Pending],
            Submitted => &[Completed, Failed, Lost, Pending],
            Completed => &[Harvested, Failed, Lost],
            Harvested => &[Queued, Pending],
            Failed | Lost => &[Queued, Pending, Elsewhere],
            Elsewhere => &[Pending],
        }
    }
}

stored_enum! {
    /// Where a direct-lane job stands, as the ledger records it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum JobStatus ("job status") {
        /// Written before the POST; not confirmed by the server yet.
        Intent = "intent",
        /// The server took it (its id is recorded) and has not finished it.
        Rendering = "rendering",
        /// The server finished it: the video is rendered (or it failed); nothing more to poll.
        Finished = "finished",
        /// Never reached the server, or given up after the server kept denying it: its request
        /// went back to be sent again.
        Abandoned = "abandoned",
    }
}

impl JobStatus {
    /// Not finished: still to be confirmed or polled.
    pub const OPEN: &[JobStatus] = &[JobStatus::Intent, JobStatus::Rendering];
}

stored_enum! {
    /// The statuses of a batch that are the ledger's own words; the others are the API's
    /// ([`render_wire::api::BatchStatus`]), which is why [`super::BatchRow::status`] is text.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum BatchMark ("batch status") {
        /// Written before the API call that creates it; not confirmed yet.
        Intent = "intent",
        /// Never reached the provider and never will: its requests went back to pending.
        Abandoned = "abandoned",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_word() {
        for &status in RequestStatus::ALL {
            assert_eq!(status.as_str().parse::<RequestStatus>().unwrap(), status);
            assert_eq!(status.sql(), format!("'{}'", status.as_str()));
        }
        for &status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>().unwrap(), status);
        }
        for &mark in BatchMark::ALL {
            assert_eq!(mark.as_str().parse::<BatchMark>().unwrap(), mark);
        }
        let err = "rendered".parse::<RequestStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "ledger holds a malformed value: request status `rendered`"
        );
    }

    #[test]
    fn serializes_as_the_stored_word() {
        let json =
            serde_json::to_string(&[RequestStatus::Elsewhere, RequestStatus::Pending]).unwrap();
        assert_eq!(json, r#"["elsewhere","pending"]"#);
        assert_eq!(
            serde_json::to_string(&JobStatus::Rendering).unwrap(),
            r#""rendering""#
        );
    }

    #[test]
    fn each_set_renders_the_sql_it_is_used_as() {
        let sql = RequestStatus::sql_set;
        assert_eq!(
            sql(RequestStatus::IN_FLIGHT),
            "('queued', 'submitted', 'completed', 'elsewhere')"
        );
        assert_eq!(
            sql(RequestStatus::IN_FLIGHT_OR_DONE),
            "('queued', 'submitted', 'completed', 'harvested', 'elsewhere')"
        );
        assert_eq!(
            sql(RequestStatus::UNCLAIMED),
            "('pending', 'lost', 'failed')"
        );
        assert_eq!(
            sql(RequestStatus::SENDABLE),
            "('pending', 'lost', 'failed', 'harvested')"
        );
        assert_eq!(sql(RequestStatus::SENT), "('queued', 'submitted')");
        assert_eq!(
            sql(RequestStatus::AT_PROVIDER),
            "('submitted', 'completed')"
        );
        assert_eq!(
            JobStatus::sql_set(JobStatus::OPEN),
            "('intent', 'rendering')"
        );
    }

    /// The sets said to be each other's complement are, so `NOT IN` one is `IN` the other.
    #[test]
    fn complements_split_every_status() {
        let split = |set: &[RequestStatus], rest: &[RequestStatus]| {
            RequestStatus::ALL
                .iter()
                .all(|s| set.contains(s) != rest.contains(s))
        };
        assert!(split(
            RequestStatus::UNCLAIMED,
            RequestStatus::IN_FLIGHT_OR_DONE
        ));
        assert!(split(RequestStatus::SENDABLE, RequestStatus::IN_FLIGHT));
        for status in RequestStatus::ALL {
            assert_eq!(
                status.is_in_flight_or_done(),
                RequestStatus::IN_FLIGHT_OR_DONE.contains(status)
            );
        }
    }

    /// Every statement that moves requests from a set to a status is a move the table allows.
    #[test]
    fn the_sql_moves_are_the_documented_ones() {
        use RequestStatus as S;
        let moves: &[(&[S], S)] = &[
            (S::UNCLAIMED, S::Elsewhere),  // set_elsewhere
            (&[S::Elsewhere], S::Pending), // set_pending
            (S::SENDABLE, S::Pending),     // queue_direct
            (S::SENDABLE, S::Queued),      // record_batch_intent (NOT IN IN_FLIGHT)
            (S::UNCLAIMED, S::Queued),     // record_job_intent (NOT IN IN_FLIGHT_OR_DONE)
            (&[S::Queued], S::Submitted),  // record_batch_created, record_job_sent
            (&[S::Queued], S::Pending),    // abandon_batch_intent
            (S::SENT, S::Pending),         // abandon_job
            (S::AT_PROVIDER, S::Lost),     // a batch id reused by the provider
        ];
        for (from, to) in moves {
            for status in from.iter().filter(|s| *s != to) {
                assert!(status.moves_to().contains(to), "{status:?} → {to:?}");
            }
        }
    }
}
