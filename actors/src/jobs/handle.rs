//! The handle users hold to the current JobsActor, and the runner that executes job documents with the registered handlers.

use super::*;

/// A handle to the current JobsActor (it survives restarts), its events and its handlers.
#[derive(Clone)]
pub struct JobsHandle {
    pub(crate) slot: Slot<JobsActor>,
    pub(crate) shared: Arc<JobsShared>,
    pub(crate) metrics: ConnectionMetrics,
}

impl std::fmt::Debug for JobsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let handlers: Vec<String> = self.shared.inner.lock().handlers.keys().cloned().collect();
        f.debug_struct("JobsHandle").field("handlers", &handlers).finish()
    }
}

impl JobsHandle {
    /// The JobsActor's current address, for actor code. A supervised restart replaces the actor, and
    /// this address with it: keep the handle (it always reaches the current one) and call
    /// this when sending, rather than keeping the address.
    pub fn addr(&self) -> Addr<JobsActor> {
        self.slot.read().clone()
    }

    /// GetPendingJobExecutions.
    pub async fn get_pending(&self) -> Result<PendingJobs, JobError> {
        self.addr().send(GetPendingJobs).await?
    }

    /// StartNextPendingJobExecution.
    pub async fn start_next(&self, request: StartNextRequest) -> Result<Option<JobExecution>, JobError> {
        self.addr().send(StartNextJob(request)).await?
    }

    /// DescribeJobExecution (`$next` for the next pending one).
    pub async fn describe(
        &self,
        job_id: &str,
        request: DescribeRequest,
    ) -> Result<Option<JobExecution>, JobError> {
        self.addr().send(DescribeJob { job_id: job_id.to_owned(), request }).await?
    }

    /// UpdateJobExecution.
    pub async fn update(&self, job_id: &str, update: JobUpdate) -> Result<jobs::UpdateAnswer, JobError> {
        self.addr().send(UpdateJob { job_id: job_id.to_owned(), update }).await?
    }

    /// Jobs events from now on as a stream with `capacity` slots (when it is full, events
    /// are dropped and counted). It ends when the connection stops.
    pub fn events(&self, capacity: usize) -> impl Stream<Item = JobEvent> + Unpin {
        let (tx, mut rx) = mpsc::channel(capacity.max(1));
        self.shared.watch(tx);
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// Sets the runner's options (handler timeout, step timer) for the executions it
    /// starts from now on.
    pub fn set_options(&self, options: JobsOptions) {
        self.shared.inner.lock().options = options;
    }

    /// Runs job documents whose `operation` is `operation` with `handler`. The first
    /// registration starts the runner (must be called inside the actix system). A name
    /// registered again replaces its handler. An empty name is refused
    /// ([`JobError::EmptyOperation`]), as [`crate::MethodsHandle::register`] refuses an empty
    /// method name.
    pub fn register<F, Fut>(&self, operation: impl Into<String>, handler: F) -> Result<(), JobError>
    where
        F: Fn(JobRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        let operation = operation.into();
        if operation.is_empty() {
            return Err(JobError::EmptyOperation);
        }
        let f: JobHandlerFn = Arc::new(move |run| Box::pin(handler(run)));
        let start = {
            let mut g = self.shared.inner.lock();
            g.handlers.insert(operation, f);
            !std::mem::replace(&mut g.runner, true)
        };
        if start {
            let events = self.events(64);
            let me = self.clone();
            actix_rt::spawn(async move { me.run(events).await });
        }
        Ok(())
    }

    /// Runs job documents whose `operation` is `operation` in an actor: each execution is a
    /// [`JobInvoked`] message whose answer is the outcome (an actor that cannot take it —
    /// mailbox closed or full — ends the execution `FAILED`, saying so).
    pub fn register_recipient(
        &self,
        operation: impl Into<String>,
        recipient: actix::Recipient<JobInvoked>,
    ) -> Result<(), JobError> {
        self.register(operation, move |run: JobRun| {
            let r = recipient.clone();
            async move {
                r.send(JobInvoked(run))
                    .await
                    .unwrap_or_else(|e| JobOutcome::failed(format!("the handling actor is unavailable: {e}")))
            }
        })
    }

    /// The runner: drains pending executions after every connection and `notify-next`.
    async fn run(self, mut events: impl Stream<Item = JobEvent> + Unpin) {
        use futures::StreamExt as _;
        // Something may be pending already (the link may have been up before the runner).
        let mut stopped = self.drain().await;
        while !stopped {
            match events.next().await {
                Some(JobEvent::Ready | JobEvent::NextChanged(Some(_))) => stopped = self.drain().await,
                Some(JobEvent::NextChanged(None) | JobEvent::PendingChanged(_)) => {}
                None => break,
            }
        }
        debug!("jobs runner ends: the connection stopped");
    }

    /// Starts and runs executions until none is pending; `true` once the connection
    /// stopped for good.
    async fn drain(&self) -> bool {
        loop {
            let step = self.shared.inner.lock().options.step_timeout_minutes;
            let request = StartNextRequest { status_details: None, step_timeout_in_minutes: step };
            match self.start_next(request).await {
                Ok(Some(execution)) => self.run_one(execution).await,
                Ok(None) => return false,
                Err(JobError::Stopped) => return true,
                Err(JobError::Timeout { .. } | JobError::Disconnected) => {
                    debug!("start-next not answered; the next connection retries");
                    return false;
                }
                Err(e) => {
                    warn!(error = %e, "start-next failed");
                    return false;
                }
            }
        }
    }

    async fn run_one(&self, execution: JobExecution) {
        let document = execution.job_document.clone().unwrap_or(Value::Null);
        let run = JobRun {
            job_id: execution.job_id.clone(),
            document,
            execution_number: execution.execution_number,
            version_number: execution.version_number,
            jobs: self.clone(),
        };
        let operation = run.operation().map(str::to_owned);
        let (handler, timeout) = {
            let g = self.shared.inner.lock();
            let handler = operation.as_ref().and_then(|op| g.handlers.get(op).cloned());
            (handler, g.options.handler_timeout)
        };
        let job_id = execution.job_id.clone();
        let outcome = match handler {
            None => {
                let op = operation.as_deref().unwrap_or("<none>");
                warn!(job_id = %job_id, operation = op, "no handler for the job's operation; rejecting it");
                JobOutcome::rejected(format!("no handler for operation {op:?}"))
            }
            Some(handler) => {
                info!(job_id = %job_id, operation = ?operation, "running job");
                let mut task = actix_rt::spawn(handler(run));
                match tokio::time::timeout(timeout, &mut task).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(e)) if e.is_panic() => {
                        warn!(job_id = %job_id, "job handler panicked; failing the job");
                        self.metrics.handler_panicked("job");
                        JobOutcome::failed("the job handler panicked")
                    }
                    Ok(Err(_)) => JobOutcome::failed("the job handler was cancelled"),
                    Err(_) => {
                        task.abort();
                        warn!(job_id = %job_id, ?timeout, "job handler overran its timeout; failing the job");
                        JobOutcome::failed(format!("the job handler overran its timeout of {timeout:?}"))
                    }
                }
            }
        };
        let status = outcome.status();
        let mut update = JobUpdate::new(status);
        let mut details = outcome.into_details();
        if jobs::validate_status_details(&details).is_err() {
            warn!(job_id = %job_id, "handler's status details break the service's rules; replaced");
            details = reason_details("the handler's status details were invalid");
        }
        update.status_details = (!details.is_empty()).then_some(details);
        update.execution_number = execution.execution_number;
        match self.update(&job_id, update).await {
            Ok(_) => {
                info!(job_id = %job_id, status = %status, "job ended");
                self.metrics.job_finished(status.as_str());
            }
            Err(e) => {
                warn!(job_id = %job_id, status = %status, error = %e, "ending the job failed; it comes back from start-next")
            }
        }
    }
}
