//! The LLM on a thread of its own, doing one job at a time in the order asked: read a
//! turn ahead (`Llm::prepare`) or write a reply (`Llm::stream`). The turn machine only
//! sends jobs and reads pieces from a channel; it never waits on the model. One thread
//! keeps the order: a reply never races the reading ahead of its own words, and of
//! several read-aheads waiting only the latest is read (it holds the others' words).

use crate::bus::Cancel;
use crate::models::parts::{ChatRequest, Llm, LlmError};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::sync::Arc;

/// What a reply sends back, in order: its text piece by piece, then how it ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Done,
    Failed(LlmError),
}

enum Job {
    /// Read ahead; `cancel` is the turn's (a reset or a new conversation drops it).
    Prepare(ChatRequest, Cancel),
    Reply {
        request: ChatRequest,
        cancel: Cancel,
        pieces: Sender<Piece>,
    },
}

pub struct LlmThread {
    jobs: Sender<Job>,
}

impl LlmThread {
    /// Start the thread; it ends when this is dropped and its current job is over
    /// (a cancelled reply stops within a token, a read-ahead within a chunk).
    pub fn spawn(llm: Arc<dyn Llm>) -> std::io::Result<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("cascade-llm".into())
            .spawn(move || {
                crate::models::cpu_share::run_as(crate::models::cpu_share::Part::Llm, || {
                    work(&*llm, &rx)
                })
            })?;
        Ok(Self { jobs })
    }

    /// Read `request` ahead (see `Llm::prepare`) unless `cancel` is set first.
    pub fn prepare(&self, request: ChatRequest, cancel: &Cancel) {
        let _ = self.jobs.send(Job::Prepare(request, cancel.clone()));
    }

    /// Write a reply to `request`: its pieces arrive on the receiver; setting `cancel`
    /// stops it (the receiver then ends, with `Done` or nothing).
    pub fn reply(&self, request: ChatRequest, cancel: &Cancel) -> Receiver<Piece> {
        let (pieces, rx) = crossbeam_channel::unbounded();
        let _ = self.jobs.send(Job::Reply {
            request,
            cancel: cancel.clone(),
            pieces,
        });
        rx
    }
}

fn work(llm: &dyn Llm, jobs: &Receiver<Job>) {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(j) => j,
            None => match jobs.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        match job {
            Job::Prepare(mut request, mut cancel) => {
                // Only the latest of the read-aheads waiting; none if a reply waits,
                // since the reply reads all of it anyway.
                loop {
                    match jobs.try_recv() {
                        Ok(Job::Prepare(r, c)) => (request, cancel) = (r, c),
                        Ok(reply) => {
                            next = Some(reply);
                            break;
                        }
                        Err(TryRecvError::Empty) => break,
                        // Nothing will ask for what this reads.
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
                if next.is_some() || cancel.is_cancelled() {
                    continue;
                }
                if let Err(e) = llm.prepare(&request, &cancel) {
                    tracing::debug!("cascade: reading ahead failed: {}", e.message);
                }
            }
            Job::Reply {
                request,
                cancel,
                pieces,
            } => {
                if cancel.is_cancelled() {
                    continue;
                }
                let mut send = |p: &str| {
                    let _ = pieces.send(Piece::Text(p.to_string()));
                };
                let end = match llm.stream(&request, &cancel, &mut send) {
                    Ok(()) => Piece::Done,
                    Err(e) => Piece::Failed(e),
                };
                let _ = pieces.send(end);
            }
        }
    }
}
