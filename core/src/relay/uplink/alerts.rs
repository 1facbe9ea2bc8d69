//! A connection's alert stream: every outbox entry, oldest first, at the
//! highest priority; entries leave the outbox only when the center
//! acknowledges, and one it refuses stays, marked.

use super::*;

impl Session {
    /// The alert stream: outbox entries out, acknowledgements back; and the
    /// center's refusals, which hold an entry instead of removing it.
    pub(super) async fn alerts(
        self: Arc<Self>,
        mut send: quinn::SendStream,
        recv: quinn::RecvStream,
        mut refusals: mpsc::Receiver<AlertRefused>,
        mut quit: watch::Receiver<bool>,
    ) -> Result<End, SessionError> {
        let uplink = &self.uplink;
        let mut acks = MessageReader::<AlertMessage>::new(recv, Role::Center);
        let mut last_sent = 0u64;
        // What this connection sent and the center has not acknowledged.
        let mut in_flight_alerts: HashMap<String, u32> = HashMap::new();
        let mut in_flight_snapshots: HashSet<String> = HashSet::new();
        let mut stopping = false;
        let labels = uplink.labels();
        loop {
            if !stopping {
                let outbox = uplink.outbox.clone();
                let batch =
                    tokio::task::spawn_blocking(move || outbox.pending(last_sent, OUTBOX_BATCH))
                        .await
                        .map_err(|e| SessionError::Outbox(e.to_string()))?
                        .map_err(|e| SessionError::Outbox(e.to_string()))?;
                if !batch.is_empty() {
                    for entry in batch {
                        last_sent = entry.seq();
                        match entry {
                            OutboxEntry::Alert { mut alert, .. } => {
                                in_flight_alerts
                                    .entry(alert.id.clone())
                                    .and_modify(|r| *r = (*r).max(alert.revision))
                                    .or_insert(alert.revision);
                                // PROTOCOL.md §9 rule 5: an alert too big with its
                                // snapshot goes without it, the snapshot after it.
                                let mut separate = None;
                                if AlertMessage::Alert(alert.clone()).encode().is_err()
                                    && let Some(jpeg) = alert.snapshot_jpeg.take()
                                {
                                    separate = Some(lookout_codecs::relay::Snapshot {
                                        alert_id: alert.id.clone(),
                                        jpeg,
                                    });
                                }
                                write_message(&mut send, &AlertMessage::Alert(alert)).await?;
                                uplink.alerts_sent.fetch_add(1, Relaxed);
                                uplink.metrics.alerts_sent.get_or_create(&labels).inc();
                                if let Some(snapshot) = separate {
                                    self.send_snapshot(
                                        &mut send,
                                        snapshot,
                                        &mut in_flight_snapshots,
                                    )
                                    .await?;
                                }
                            }
                            OutboxEntry::Snapshot { snapshot, .. } => {
                                self.send_snapshot(&mut send, snapshot, &mut in_flight_snapshots)
                                    .await?;
                            }
                        }
                    }
                    continue;
                }
            } else if in_flight_alerts.is_empty() && in_flight_snapshots.is_empty() {
                return Ok(End::Stopped);
            }
            let message = tokio::select! {
                m = acks.next() => Some(m?),
                Some(r) = refusals.recv() => {
                    self.refused(r, &mut in_flight_alerts, &mut in_flight_snapshots).await?;
                    None
                }
                _ = uplink.outbox_ready.notified(), if !stopping => continue,
                _ = quit.changed(), if !stopping => {
                    stopping = true;
                    continue;
                }
                _ = tokio::time::sleep(DRAIN_TIMEOUT), if stopping => return Ok(End::Stopped),
            };
            let outbox = uplink.outbox.clone();
            match message {
                // A refusal, handled above.
                None => {}
                Some(Some(AlertMessage::AlertAck(ack))) => {
                    if in_flight_alerts
                        .get(&ack.id)
                        .is_some_and(|r| *r <= ack.revision)
                    {
                        in_flight_alerts.remove(&ack.id);
                    }
                    uplink.alerts_acked.fetch_add(1, Relaxed);
                    uplink.metrics.alerts_acked.get_or_create(&labels).inc();
                    tokio::task::spawn_blocking(move || outbox.ack_alert(&ack.id, ack.revision))
                        .await
                        .map_err(|e| SessionError::Outbox(e.to_string()))?
                        .map_err(|e| SessionError::Outbox(e.to_string()))?;
                }
                Some(Some(AlertMessage::SnapshotAck(ack))) => {
                    in_flight_snapshots.remove(&ack.alert_id);
                    tokio::task::spawn_blocking(move || outbox.ack_snapshot(&ack.alert_id))
                        .await
                        .map_err(|e| SessionError::Outbox(e.to_string()))?
                        .map_err(|e| SessionError::Outbox(e.to_string()))?;
                }
                Some(Some(other)) => {
                    return Err(SessionError::Violation(format!(
                        "{other:?} from the center on the alert stream"
                    )));
                }
                Some(None) => {
                    return Err(SessionError::Violation("alert stream finished".into()));
                }
            }
            // Two COUNT(*)s: on a blocking thread, not a runtime worker.
            let outbox = uplink.outbox.clone();
            let counts =
                tokio::task::spawn_blocking(move || (outbox.len(), outbox.refused_len())).await;
            if let Ok((Ok(n), _)) = counts {
                uplink
                    .metrics
                    .outbox_depth
                    .get_or_create(&labels)
                    .set(n as i64);
            }
            if let Ok((_, Ok(n))) = counts {
                uplink
                    .metrics
                    .outbox_refused
                    .get_or_create(&labels)
                    .set(n as i64);
            }
        }
    }

    /// PROTOCOL.md §9 gateway rule 6: the center did not store an entry. It
    /// stays in the outbox (only an acknowledgement removes one), marked with
    /// the center's code and reason for `/api/upstreams`; it is no longer in
    /// flight, so a stopping gateway does not wait for it, and this connection
    /// does not send it again (its cursor has passed it). The next connection
    /// sends it with everything else waiting.
    pub(super) async fn refused(
        &self,
        r: AlertRefused,
        in_flight_alerts: &mut HashMap<String, u32>,
        in_flight_snapshots: &mut HashSet<String>,
    ) -> Result<(), SessionError> {
        let uplink = &self.uplink;
        match r.revision {
            Some(revision) => {
                if in_flight_alerts.get(&r.alert_id) == Some(&revision) {
                    in_flight_alerts.remove(&r.alert_id);
                }
            }
            None => {
                in_flight_snapshots.remove(&r.alert_id);
            }
        }
        let code = code_name(r.code.value());
        let mut labels = uplink.labels();
        labels.push(("code".into(), code.clone()));
        uplink.metrics.alerts_refused.get_or_create(&labels).inc();
        tracing::warn!(
            upstream = %uplink.config.id,
            alert = %r.alert_id,
            revision = ?r.revision,
            code = %code,
            "the command center refused to store this alert; it stays in the outbox and goes out again on the next connection: {}",
            r.reason
        );
        let outbox = uplink.outbox.clone();
        let marked = tokio::task::spawn_blocking(move || {
            outbox.mark_refused(
                &r.alert_id,
                r.revision,
                r.code.value(),
                &r.reason,
                unix_ms(),
            )
        })
        .await
        .map_err(|e| SessionError::Outbox(e.to_string()))?
        .map_err(|e| SessionError::Outbox(e.to_string()))?;
        if marked == 0 {
            // Acknowledged or superseded by a higher revision meanwhile.
            tracing::debug!(upstream = %uplink.config.id, "the refused entry is no longer waiting");
        }
        Ok(())
    }

    /// Sends a snapshot; one that cannot be encoded (over the alert
    /// stream's 16 MiB) is dropped from the outbox with an error, since no
    /// center could ever take it, and the alert itself still goes.
    pub(super) async fn send_snapshot(
        &self,
        send: &mut quinn::SendStream,
        snapshot: lookout_codecs::relay::Snapshot,
        in_flight: &mut HashSet<String>,
    ) -> Result<(), SessionError> {
        let message = AlertMessage::Snapshot(snapshot);
        if let Err(e) = message.encode() {
            let AlertMessage::Snapshot(snapshot) = message else {
                return Ok(());
            };
            tracing::error!(alert = %snapshot.alert_id, "snapshot dropped, it cannot be sent: {e}");
            let outbox = self.uplink.outbox.clone();
            let id = snapshot.alert_id.clone();
            match tokio::task::spawn_blocking(move || outbox.ack_snapshot(&id)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("the dropped snapshot stays in the outbox: {e}"),
                Err(e) => tracing::error!("the dropped snapshot stays in the outbox: {e}"),
            }
            return Ok(());
        }
        if let AlertMessage::Snapshot(s) = &message {
            in_flight.insert(s.alert_id.clone());
        }
        write_message(send, &message).await?;
        Ok(())
    }
}
