//! The lowest CPU priority, for the threads that do background work (the image pool, provider
//! calls), so that request threads get a core first wherever the kernel allows.

/// Moves the calling thread to the lowest priority. On Linux that is SCHED_IDLE: a request
/// thread that wakes preempts it at once, and it still has every core nobody else wants. (A
/// low nice value is not enough: the scheduler lets the running thread finish its slice first,
/// milliseconds per wake-up.) It is not absolute: under EEVDF (Linux 6.6 and later) a
/// SCHED_IDLE thread that has waited long is still owed a slice, taken ahead of request
/// threads; BENCHMARKS.md ("What the remaining single-client tail is") measures that.
/// Elsewhere the thread takes the lowest priority it may.
pub(crate) fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    let lowered = {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
    };
    #[cfg(not(target_os = "linux"))]
    let lowered =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    if let Err(error) = lowered {
        tracing::debug!(?error, "background thread runs at normal priority");
    }
}

/// A point where background work hands its CPU to any other thread waiting for it
/// (`sched_yield`: one system call when none is). Background threads call it every few
/// hundred microseconds of work: under EEVDF a SCHED_IDLE thread can be picked ahead of a
/// waiting request thread and then keeps the CPU until the next scheduler tick (4 ms at
/// HZ=250); a yield moves its virtual deadline back a slice and lets the scheduler pick again.
pub(crate) fn offer_cpu() {
    std::thread::yield_now();
}

/// Linux's number for SCHED_IDLE.
#[cfg(all(test, target_os = "linux"))]
pub(crate) const SCHED_IDLE: u32 = 5;

/// The calling thread's scheduling policy, read from `/proc` as the kernel reports it.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn scheduling_policy() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the parenthesised name: state is field 3, policy is field 41.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(38).unwrap().parse::<u32>().unwrap()
}
