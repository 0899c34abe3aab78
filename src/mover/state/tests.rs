//! Every row of the spec's mover state table: each request in each state it may and may not
//! arrive in, and what it leaves behind.

use super::*;

const RS: u32 = 10240;

fn err<T>(r: Result<T, Refusal>) -> NdmpError {
    match r {
        Ok(_) => NdmpError::NO_ERR,
        Err(e) => e.error,
    }
}

fn in_state(state: MoverState, mode: MoverMode) -> Mover {
    let mut m = Mover::default();
    m.set_record_size(RS, 1 << 20).unwrap();
    m.set_window(0, INFINITE).unwrap();
    m.state = state;
    m.mode = mode;
    m
}

const ALL: [MoverState; 5] = [
    MoverState::IDLE,
    MoverState::LISTEN,
    MoverState::ACTIVE,
    MoverState::PAUSED,
    MoverState::HALTED,
];

#[test]
fn a_fresh_mover_is_idle_with_everything_zero() {
    let r = Mover::default().report();
    assert_eq!(r.state, MoverState::IDLE);
    assert_eq!(r.mode, MoverMode::NOACTION);
    assert_eq!(r.pause_reason, MoverPauseReason::NA);
    assert_eq!(r.halt_reason, MoverHaltReason::NA);
    assert_eq!(
        (r.record_size, r.record_num, r.bytes_moved, r.seek_position),
        (0, 0, 0, 0)
    );
    assert_eq!(
        (r.bytes_left_to_read, r.window_offset, r.window_length),
        (0, 0, 0)
    );
    assert_eq!(r.data_connection_addr, Addr::Local);
}

#[test]
fn set_record_size_only_in_idle_and_it_clears_the_window() {
    for s in ALL {
        let mut m = in_state(s, MoverMode::READ);
        let want = if s == MoverState::IDLE {
            NdmpError::NO_ERR
        } else {
            NdmpError::ILLEGAL_STATE_ERR
        };
        assert_eq!(err(m.set_record_size(512, 1 << 20)), want, "{s:?}");
    }
    let mut m = in_state(MoverState::IDLE, MoverMode::NOACTION);
    m.set_window(20480, 40960).unwrap();
    m.set_record_size(512, 1 << 20).unwrap();
    assert_eq!(m.window, Window::default());
    assert_eq!(m.report().record_num, 0);
    assert_eq!(
        err(m.set_record_size(0, 1 << 20)),
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(
        err(m.set_record_size((1 << 20) + 1, 1 << 20)),
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(m.record_size, 512, "a refused size changes nothing");
}

#[test]
fn record_size_survives_stop() {
    let mut m = in_state(MoverState::HALTED, MoverMode::READ);
    m.stopped();
    assert_eq!(m.state, MoverState::IDLE);
    assert_eq!(m.record_size, RS);
    assert_eq!(m.window, Window::default());
    assert_eq!(m.mode, MoverMode::NOACTION);
}

#[test]
fn set_window_in_idle_or_paused_only() {
    for s in ALL {
        let mut m = in_state(s, MoverMode::READ);
        let want = match s {
            MoverState::IDLE | MoverState::PAUSED => NdmpError::NO_ERR,
            _ => NdmpError::ILLEGAL_STATE_ERR,
        };
        assert_eq!(err(m.set_window(0, u64::from(RS) * 4)), want, "{s:?}");
    }
}

#[test]
fn set_window_needs_a_record_size_except_for_the_empty_window() {
    let mut m = Mover::default();
    assert_eq!(err(m.set_window(0, 0)), NdmpError::NO_ERR);
    assert_eq!(err(m.set_window(0, 1024)), NdmpError::PRECONDITION_ERR);
    assert_eq!(err(m.set_window(0, INFINITE)), NdmpError::PRECONDITION_ERR);
}

#[test]
fn set_window_sets_the_record_number_and_refuses_overflow() {
    let mut m = in_state(MoverState::IDLE, MoverMode::NOACTION);
    m.set_window(u64::from(RS) * 7, u64::from(RS)).unwrap();
    assert_eq!(m.report().record_num, 7);
    assert_eq!(m.report().window_offset, u64::from(RS) * 7);
    assert_eq!(err(m.set_window(1, INFINITE - 1)), NdmpError::NO_ERR);
    assert_eq!(
        err(m.set_window(2, INFINITE - 1)),
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(m.window.offset, 1, "unchanged");
    // NDMP_LENGTH_INFINITY after an offset (ndmjob's continuation window) reaches all ones
    assert_eq!(
        err(m.set_window(u64::from(RS) * 9, INFINITE)),
        NdmpError::NO_ERR
    );
    assert_eq!(m.window.end(), INFINITE);
    // the "maximum window after a pause" form reaches exactly all ones
    m.state = MoverState::PAUSED;
    m.mode = MoverMode::WRITE;
    let off = u64::from(RS) * 3;
    assert_eq!(err(m.set_window(off, INFINITE - off)), NdmpError::NO_ERR);
    assert_eq!(m.window.end(), INFINITE);
}

#[test]
fn paused_windows_follow_the_mode_rules() {
    let rs = u64::from(RS);
    let mut b = in_state(MoverState::PAUSED, MoverMode::READ);
    assert_eq!(err(b.set_window(0, 0)), NdmpError::ILLEGAL_ARGS_ERR);
    assert_eq!(err(b.set_window(0, rs + 1)), NdmpError::ILLEGAL_ARGS_ERR);
    assert_eq!(err(b.set_window(rs * 2, rs * 3)), NdmpError::NO_ERR);
    assert_eq!(err(b.set_window(5, INFINITE - 5)), NdmpError::NO_ERR);
    let mut r = in_state(MoverState::PAUSED, MoverMode::WRITE);
    assert_eq!(err(r.set_window(rs + 1, rs)), NdmpError::ILLEGAL_ARGS_ERR);
    // the last window of a recovery may end inside a record
    assert_eq!(err(r.set_window(rs, rs + 17)), NdmpError::NO_ERR);
}

#[test]
fn listen_and_connect_checks_in_spec_order() {
    let tcp = AddrType::TCP;
    let rw = TapeAccess::ReadWrite;
    for s in ALL {
        let m = in_state(s, MoverMode::NOACTION);
        let want = if s == MoverState::IDLE {
            NdmpError::NO_ERR
        } else {
            NdmpError::ILLEGAL_STATE_ERR
        };
        assert_eq!(err(m.check_start(MoverMode::READ, tcp, rw)), want, "{s:?}");
    }
    let m = in_state(MoverState::IDLE, MoverMode::NOACTION);
    assert_eq!(
        err(m.check_start(MoverMode(123), AddrType::LOCAL, rw)),
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(
        err(m.check_start(MoverMode::NOACTION, tcp, rw)),
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(
        err(m.check_start(MoverMode::READ, AddrType(123), rw)),
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(
        err(m.check_start(MoverMode::READ, AddrType::IPC, rw)),
        NdmpError::ILLEGAL_ARGS_ERR
    );
    for mode in [MoverMode::READ, MoverMode::WRITE] {
        assert_eq!(
            err(m.check_start(mode, tcp, TapeAccess::NotOpen)),
            NdmpError::DEV_NOT_OPEN_ERR
        );
    }
    assert_eq!(
        err(m.check_start(MoverMode::READ, tcp, TapeAccess::ReadOnly)),
        NdmpError::PERMISSION_ERR
    );
    assert_eq!(
        err(m.check_start(MoverMode::WRITE, tcp, TapeAccess::ReadOnly)),
        NdmpError::NO_ERR
    );
    let fresh = Mover::default();
    assert_eq!(
        err(fresh.check_start(MoverMode::READ, tcp, rw)),
        NdmpError::PRECONDITION_ERR
    );
    let mut odd = in_state(MoverState::IDLE, MoverMode::NOACTION);
    odd.window = Window {
        offset: 0,
        length: u64::from(RS) + 1,
    };
    assert_eq!(
        err(odd.check_start(MoverMode::READ, tcp, rw)),
        NdmpError::PRECONDITION_ERR
    );
    odd.window = Window {
        offset: 1,
        length: u64::from(RS),
    };
    assert_eq!(
        err(odd.check_start(MoverMode::WRITE, tcp, rw)),
        NdmpError::PRECONDITION_ERR
    );
}

#[test]
fn listen_then_connect_then_pause_continue_close_abort_stop() {
    let mut m = in_state(MoverState::IDLE, MoverMode::NOACTION);
    m.listening(MoverMode::READ);
    assert_eq!(m.report().state, MoverState::LISTEN);
    assert_eq!(m.report().mode, MoverMode::READ);
    m.activated(MoverMode::READ, Addr::Local);
    assert_eq!(m.report().state, MoverState::ACTIVE);
    m.paused(MoverPauseReason::EOM, 4096);
    let r = m.report();
    assert_eq!(
        (r.state, r.pause_reason, r.seek_position),
        (MoverState::PAUSED, MoverPauseReason::EOM, 4096)
    );
    assert_eq!(r.halt_reason, MoverHaltReason::NA);
    m.resumed();
    assert_eq!(m.report().pause_reason, MoverPauseReason::NA);
    m.halted(MoverHaltReason::CONNECT_CLOSED);
    let r = m.report();
    assert_eq!(
        (r.state, r.halt_reason, r.pause_reason),
        (
            MoverState::HALTED,
            MoverHaltReason::CONNECT_CLOSED,
            MoverPauseReason::NA
        )
    );
    m.stopped();
    assert_eq!(m.report().halt_reason, MoverHaltReason::NA);
}

#[test]
fn continue_only_when_paused_with_a_window_and_a_usable_tape() {
    for s in ALL {
        let m = in_state(s, MoverMode::READ);
        let want = if s == MoverState::PAUSED {
            NdmpError::NO_ERR
        } else {
            NdmpError::ILLEGAL_STATE_ERR
        };
        assert_eq!(err(m.check_continue(TapeAccess::ReadWrite)), want, "{s:?}");
    }
    let mut m = in_state(MoverState::PAUSED, MoverMode::READ);
    assert_eq!(
        err(m.check_continue(TapeAccess::NotOpen)),
        NdmpError::DEV_NOT_OPEN_ERR
    );
    assert_eq!(
        err(m.check_continue(TapeAccess::ReadOnly)),
        NdmpError::PERMISSION_ERR
    );
    m.window = Window::default();
    assert_eq!(
        err(m.check_continue(TapeAccess::ReadWrite)),
        NdmpError::PRECONDITION_ERR
    );
}

#[test]
fn read_only_when_active_in_recovery_one_at_a_time() {
    for s in ALL {
        let m = in_state(s, MoverMode::WRITE);
        let want = if s == MoverState::ACTIVE {
            NdmpError::NO_ERR
        } else {
            NdmpError::ILLEGAL_STATE_ERR
        };
        assert_eq!(err(m.check_read(0, 100)), want, "{s:?}");
    }
    let backup = in_state(MoverState::ACTIVE, MoverMode::READ);
    assert_eq!(err(backup.check_read(0, 100)), NdmpError::ILLEGAL_STATE_ERR);
    let mut m = in_state(MoverState::ACTIVE, MoverMode::WRITE);
    assert_eq!(err(m.check_read(0, 0)), NdmpError::ILLEGAL_ARGS_ERR);
    assert_eq!(
        err(m.check_read(10, u64::MAX - 5)),
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(err(m.check_read(0, INFINITE)), NdmpError::NO_ERR);
    m.reading(512, 1000);
    let r = m.report();
    assert_eq!((r.seek_position, r.bytes_left_to_read), (512, 1000));
    assert_eq!(err(m.check_read(0, 100)), NdmpError::READ_IN_PROGRESS_ERR);
    m.halted(MoverHaltReason::ABORTED);
    assert_eq!(m.report().bytes_left_to_read, 0);
}

#[test]
fn close_abort_and_stop_states() {
    for s in ALL {
        let m = in_state(s, MoverMode::READ);
        let close = if s == MoverState::PAUSED {
            NdmpError::NO_ERR
        } else {
            NdmpError::ILLEGAL_STATE_ERR
        };
        let abort = if s == MoverState::IDLE {
            NdmpError::ILLEGAL_STATE_ERR
        } else {
            NdmpError::NO_ERR
        };
        let stop = if s == MoverState::HALTED {
            NdmpError::NO_ERR
        } else {
            NdmpError::ILLEGAL_STATE_ERR
        };
        assert_eq!(err(m.check_close()), close, "close in {s:?}");
        assert_eq!(err(m.check_abort()), abort, "abort in {s:?}");
        assert_eq!(err(m.check_stop()), stop, "stop in {s:?}");
    }
}

#[test]
fn stop_resets_every_counter() {
    let mut m = in_state(MoverState::HALTED, MoverMode::WRITE);
    m.progress.bytes_moved.store(99, Ordering::Relaxed);
    m.progress.record_num.store(9, Ordering::Relaxed);
    m.seek_position = 7;
    m.connection = crate::dataconn::net::peer_addr("10.1.2.3:4000".parse().unwrap());
    m.stopped();
    let r = m.report();
    assert_eq!((r.bytes_moved, r.record_num, r.seek_position), (0, 0, 0));
    assert_eq!(r.data_connection_addr, Addr::Local);
}

#[test]
fn stop_resets_the_counters_in_place() {
    // the registry reads this same Progress: a replaced one would freeze the REST view
    let mut m = in_state(MoverState::HALTED, MoverMode::READ);
    let watcher = m.progress().clone();
    m.progress.bytes_moved.store(4096, Ordering::Relaxed);
    assert_eq!(
        m.request(MoverRequest::Stop, TapeAccess::ReadWrite, RS),
        Ok(Effect::Reset)
    );
    assert!(Arc::ptr_eq(&watcher, m.progress()));
    assert_eq!(watcher.bytes_moved.load(Ordering::Relaxed), 0);
    m.progress().bytes_moved.fetch_add(10, Ordering::Relaxed);
    assert_eq!(watcher.bytes_moved.load(Ordering::Relaxed), 10);
    assert_eq!(m.report().bytes_moved, 10);
}

#[test]
fn requests_return_the_effect_the_session_carries_out() {
    let tape = TapeAccess::ReadWrite;
    let mut m = Mover::default();
    assert_eq!(
        m.request(MoverRequest::SetRecordSize(RS), tape, 1 << 20),
        Ok(Effect::Reply)
    );
    assert_eq!(
        m.request(MoverRequest::SetRecordSize(2 << 20), tape, 1 << 20)
            .unwrap_err()
            .error,
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(
        m.request(MoverRequest::Abort, tape, RS).unwrap_err().error,
        NdmpError::ILLEGAL_STATE_ERR
    );

    let mut p = in_state(MoverState::PAUSED, MoverMode::READ);
    p.window = Window {
        offset: 0,
        length: u64::from(RS) * 4,
    };
    assert_eq!(
        p.request(MoverRequest::Continue, tape, RS),
        Ok(Effect::Resume(p.window()))
    );
    assert_eq!(p.state(), MoverState::ACTIVE);
    assert_eq!(
        p.request(MoverRequest::Close, tape, RS).unwrap_err().error,
        NdmpError::ILLEGAL_STATE_ERR,
        "close only while PAUSED"
    );
    assert_eq!(
        p.request(MoverRequest::Abort, tape, RS),
        Ok(Effect::Halt { abort: true })
    );

    let mut c = in_state(MoverState::PAUSED, MoverMode::READ);
    assert_eq!(
        c.request(MoverRequest::Close, tape, RS),
        Ok(Effect::Halt { abort: false })
    );

    let mut r = in_state(MoverState::ACTIVE, MoverMode::WRITE);
    assert_eq!(
        r.request(
            MoverRequest::Read {
                offset: 8,
                length: 16
            },
            tape,
            RS
        ),
        Ok(Effect::Read {
            offset: 8,
            length: 16
        })
    );
    let rep = r.report();
    assert_eq!((rep.seek_position, rep.bytes_left_to_read), (8, 16));
    assert_eq!(
        r.request(
            MoverRequest::Read {
                offset: 0,
                length: 1
            },
            tape,
            RS
        )
        .unwrap_err()
        .error,
        NdmpError::READ_IN_PROGRESS_ERR
    );
    assert!(r.has_tape());
    r.halted(MoverHaltReason::ABORTED);
    assert!(!r.has_tape());
}
