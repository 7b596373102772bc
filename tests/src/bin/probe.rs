//! An "agent" for the integration tests: each subcommand performs one action the way an
//! agent trying to slip past the monitor might, and prints what the test needs to know.

use std::{
    ffi::CString,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::{fd::FromRawFd, unix::net::UnixStream},
    time::{Duration, Instant},
};

use std::os::linux::net::SocketAddrExt;

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in argument")
}

fn check(ret: libc::c_long, what: &str) -> libc::c_long {
    if ret < 0 {
        eprintln!("probe: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(2);
    }
    ret
}

fn open_read(path: &str) {
    // SAFETY: valid C string.
    let fd = check(unsafe { libc::open(cstr(path).as_ptr(), libc::O_RDONLY) } as _, path);
    // SAFETY: fd is ours.
    unsafe { libc::close(fd as i32) };
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| panic!("missing argument {i}"));
    match arg(0) {
        "open" => open_read(arg(1)),
        "whereami" => {
            // Opens PATH, then prints its mount namespace and working directory.
            open_read(arg(1));
            let ns = std::fs::read_link("/proc/self/ns/mnt").expect("readlink");
            println!("ns={} cwd={}", ns.display(), std::env::current_dir().expect("cwd").display());
        }
        // try OP ARGS... [-- OP ARGS...]: attempts each operation, prints
        // `OP ok` or `OP errno=N`, and goes on; `done` at the end proves the process
        // survived every attempt.
        "try" => {
            for attempt in args[1..].split(|a| a == "--") {
                let outcome = match try_op(attempt) {
                    Ok(()) => "ok".to_owned(),
                    Err(errno) => format!("errno={errno}"),
                };
                println!("{} {outcome}", attempt[0]);
                let _ = std::io::stdout().flush();
            }
            println!("done");
        }
        "openat" => {
            // openat(dirfd, name): the kernel resolves `name` relative to a directory fd.
            // SAFETY: valid C strings.
            let dir = check(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_PATH | libc::O_DIRECTORY) } as _, "dir");
            let fd = check(unsafe { libc::openat(dir as i32, cstr(arg(2)).as_ptr(), libc::O_RDONLY) } as _, "openat");
            // SAFETY: fds are ours.
            unsafe {
                libc::close(fd as i32);
                libc::close(dir as i32);
            }
        }
        "openat-loop-renaming" => {
            // openat-loop-renaming N DIR OTHER NAME: N opens of NAME through one
            // descriptor of DIR while a thread renames DIR to OTHER and back; prints
            // how many renames were made.
            let n: u64 = arg(1).parse().expect("count");
            // SAFETY: valid C string.
            let dir = check(unsafe { libc::open(cstr(arg(2)).as_ptr(), libc::O_PATH | libc::O_DIRECTORY) } as _, "dir");
            let (here, there) = (arg(2).to_owned(), arg(3).to_owned());
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let renamer = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut renames = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::fs::rename(&here, &there).expect("rename");
                        std::fs::rename(&there, &here).expect("rename back");
                        renames += 2;
                    }
                    renames
                })
            };
            let name = cstr(arg(4));
            for _ in 0..n {
                // SAFETY: valid C string; fds are ours.
                unsafe {
                    libc::close(check(libc::openat(dir as i32, name.as_ptr(), libc::O_RDONLY) as _, "openat") as i32)
                };
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            println!("renames={}", renamer.join().expect("renamer"));
            // SAFETY: fd is ours.
            unsafe { libc::close(dir as i32) };
        }
        "openat2" => {
            // SAFETY: valid C strings; open_how is zeroed then filled.
            let dir = check(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_PATH | libc::O_DIRECTORY) } as _, "dir");
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = libc::O_RDONLY as u64;
            let fd = check(
                unsafe {
                    libc::syscall(
                        libc::SYS_openat2,
                        dir,
                        cstr(arg(2)).as_ptr(),
                        &how as *const _,
                        size_of::<libc::open_how>(),
                    )
                },
                "openat2",
            );
            // SAFETY: fds are ours.
            unsafe {
                libc::close(fd as i32);
                libc::close(dir as i32);
            }
        }
        "write" => {
            // O_WRONLY|O_CREAT|O_TRUNC
            let mut file = std::fs::File::create(arg(1)).expect("create");
            file.write_all(b"x").expect("write");
        }
        "read-write" => {
            let _ = std::fs::OpenOptions::new().read(true).write(true).open(arg(1)).expect("open rw");
        }
        "threads" => {
            // A thread, not a process: it shares the tgid and must be in the session.
            let path = arg(1).to_owned();
            let tid = std::thread::spawn(move || {
                open_read(&path);
                // SAFETY: gettid has no preconditions.
                unsafe { libc::gettid() }
            })
            .join()
            .expect("thread");
            println!("tid={tid}");
        }
        "leader-exits" => {
            // Threads that end, the first one among them, leave the process in its
            // session: a thread that ended first, then the main thread, then a reader.
            let path = arg(1).to_owned();
            std::thread::spawn(|| {}).join().expect("thread");
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                print!("{}", std::fs::read_to_string(&path).unwrap_or_default());
                let _ = std::io::stdout().flush();
                std::process::exit(0);
            });
            // SAFETY: exit(2), not exit_group(2): ends the calling thread only, without
            // unwinding; nothing of it is used afterwards.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        }
        "daemonize" => daemonize(arg(1)),
        "connect" => {
            let addr: SocketAddr = arg(1).parse().expect("socket address");
            // A blocking connect: the event carries its final result.
            match TcpStream::connect(addr) {
                Ok(_) => println!("connected"),
                Err(e) => println!("error={}", e.raw_os_error().unwrap_or(0)),
            }
        }
        "unix-send" => match std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.send_to(b"x", arg(1))) {
            Ok(_) => println!("sent"),
            Err(e) => println!("error={}", e.raw_os_error().unwrap_or(0)),
        },
        // connect-unix PATH, or @NAME for an abstract socket.
        "connect-unix" => match match arg(1).strip_prefix('@') {
            Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|address| UnixStream::connect_addr(&address)),
            None => UnixStream::connect(arg(1)),
        } {
            Ok(_) => println!("connected"),
            Err(e) => println!("error={}", e.raw_os_error().unwrap_or(0)),
        },
        "cat" => {
            // Open, read and print a file: what an agent exfiltrating it would do.
            let mut file = std::fs::File::open(arg(1)).unwrap_or_else(|e| {
                eprintln!("probe: {}: {e}", arg(1));
                std::process::exit(2)
            });
            let mut data = Vec::new();
            file.read_to_end(&mut data).expect("read");
            std::io::stdout().write_all(&data).expect("write");
        }
        "overwrite" => {
            // Open for reading and writing (no truncation) and overwrite the start.
            let mut file = std::fs::OpenOptions::new().read(true).write(true).open(arg(1)).expect("open rw");
            file.write_all(arg(2).as_bytes()).expect("write");
            println!("wrote");
        }
        "spawn-daemon" => spawn_daemon(),
        "raw-socket" => {
            // A raw ICMP socket: it sends without connect() or the sendmsg hooks.
            // SAFETY: plain socket(2).
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
            if fd < 0 {
                println!("error={}", std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            } else {
                println!("fd={fd}");
            }
        }
        "open-mode3" => {
            // Access mode 3 (O_WRONLY|O_RDWR): an ioctl-only descriptor, neither mode bit set.
            // SAFETY: valid C string.
            let fd = unsafe { libc::open(cstr(arg(1)).as_ptr(), 3) };
            println!("fd={fd}");
        }
        "openat2-read" => {
            // openat2 with plain O_RDONLY: its flags live in user memory.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = libc::O_RDONLY as u64;
            // SAFETY: valid C string and open_how.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    libc::AT_FDCWD,
                    cstr(arg(1)).as_ptr(),
                    &how as *const _,
                    size_of::<libc::open_how>(),
                )
            };
            println!("fd={fd}");
        }
        "handle-open" => {
            // name_to_handle_at, then open_by_handle_at on the handle.
            #[repr(C)]
            struct Handle {
                bytes: u32,
                kind: i32,
                data: [u8; 128],
            }
            let mut handle = Handle { bytes: 128, kind: 0, data: [0; 128] };
            let mut mount_id = 0;
            // SAFETY: valid buffers.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_name_to_handle_at,
                    libc::AT_FDCWD,
                    cstr(arg(1)).as_ptr(),
                    &mut handle as *mut Handle,
                    &mut mount_id,
                    0,
                )
            };
            check(r, "name_to_handle_at");
            // SAFETY: valid handle.
            let fd = unsafe {
                libc::syscall(libc::SYS_open_by_handle_at, libc::AT_FDCWD, &mut handle as *mut Handle, libc::O_RDONLY)
            };
            println!("fd={fd}");
        }
        // open(2) and creat(2) themselves (glibc's open() makes an openat call). They
        // exist on x86_64 only: arm64 has just the *at syscalls.
        #[cfg(target_arch = "x86_64")]
        "legacy-open" => {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND;
            // SAFETY: valid C string.
            let fd = check(unsafe { libc::syscall(libc::SYS_open, cstr(arg(1)).as_ptr(), flags, 0o644) }, "open");
            // SAFETY: fd is ours.
            unsafe { libc::close(fd as i32) };
        }
        #[cfg(target_arch = "x86_64")]
        "legacy-creat" => {
            // SAFETY: valid C string.
            let fd = check(unsafe { libc::syscall(libc::SYS_creat, cstr(arg(1)).as_ptr(), 0o644) }, "creat");
            // SAFETY: fd is ours.
            unsafe { libc::close(fd as i32) };
        }
        "connect-fd" => {
            // connect() on a socket moved to descriptor FD: the event must name that
            // descriptor (the syscall's first argument).
            use std::os::fd::IntoRawFd;
            let addr: SocketAddr = arg(1).parse().expect("socket address");
            let wanted: i32 = arg(2).parse().expect("descriptor number");
            let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
            let socket = socket2_tcp(family).into_raw_fd();
            // SAFETY: plain dup2/close/connect on descriptors this process owns.
            unsafe {
                check(libc::dup2(socket, wanted) as _, "dup2");
                libc::close(socket);
                let (storage, len) = sockaddr(addr);
                let ret = libc::connect(wanted, (&storage as *const libc::sockaddr_storage).cast(), len);
                if ret == 0 {
                    println!("connected fd={wanted}");
                } else {
                    println!("error={}", std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        "int80" => {
            // A 32-bit syscall from 64-bit code: ia32 getpid (20) through int 0x80.
            let mut ret: i64 = 20;
            // SAFETY: ia32 getpid takes no arguments and touches no memory.
            unsafe { core::arch::asm!("int 0x80", inout("rax") ret, options(nostack)) };
            println!("int80={ret}");
        }
        "memfd-exec" => {
            // Runs a copy of PROGRAM from an anonymous memory file: no path on disk.
            let program = std::fs::read(arg(1)).expect("read program");
            // SAFETY: plain syscalls on fds we own; fexecve replaces the process.
            unsafe {
                let fd = libc::memfd_create(cstr("payload").as_ptr(), 0);
                check(fd as _, "memfd_create");
                let mut file = std::fs::File::from_raw_fd(fd);
                file.write_all(&program).expect("write memfd");
                let argv = [cstr("payload"), cstr("--version")];
                let argv_ptrs = [argv[0].as_ptr(), argv[1].as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null()];
                libc::fexecve(fd, argv_ptrs.as_ptr(), envp.as_ptr());
            }
            println!("fexecve failed: {}", std::io::Error::last_os_error());
        }
        "clone-files" => {
            // A new process (not a thread) sharing this one's descriptor table.
            // SAFETY: the child only calls _exit.
            let pid = unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_FILES | libc::SIGCHLD, 0, 0, 0, 0) };
            if pid == 0 {
                unsafe { libc::_exit(0) };
            }
            check(pid, "clone");
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
            println!("cloned");
        }
        "pidfd-getfd" => {
            // Takes descriptor 0 of the parent process.
            // SAFETY: plain syscalls.
            let pidfd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getppid(), 0) }, "pidfd_open");
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) };
            println!("pidfd_getfd={fd}");
        }
        "uring-connect" => uring_connect(arg(1).parse().expect("socket address")),
        "uring-open" => uring_open(arg(1)),
        "bind" => match std::net::TcpListener::bind(arg(1)) {
            Ok(_) => println!("bound"),
            Err(e) => println!("error={}", e.raw_os_error().unwrap_or(0)),
        },
        "udp-send" => {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
            match socket.send_to(b"ping", arg(1)) {
                Ok(_) => println!("sent"),
                Err(e) => println!("error={}", e.raw_os_error().unwrap_or(0)),
            }
        }
        "connect-then-live" => {
            // Connects, reports, then stays alive: a profile with on_violation: kill
            // must end it.
            let addr: SocketAddr = arg(1).parse().expect("socket address");
            match TcpStream::connect(addr) {
                Ok(_) => println!("connected"),
                Err(e) => println!("error={}", e.raw_os_error().unwrap_or(0)),
            }
            std::io::stdout().flush().ok();
            std::thread::sleep(Duration::from_secs(5));
            println!("still alive");
        }
        "exit" => std::process::exit(arg(1).parse().expect("exit code")),
        "kill-self" => {
            let signal: i32 = arg(1).parse().expect("signal");
            // SAFETY: signalling ourselves.
            unsafe { libc::kill(libc::getpid(), signal) };
            std::thread::sleep(Duration::from_secs(5));
        }
        "open-loop" => {
            // Benchmark: N open+close of PATH; prints nanoseconds per iteration.
            let n: u64 = arg(1).parse().expect("count");
            let path = cstr(arg(2));
            let start = Instant::now();
            for _ in 0..n {
                // SAFETY: valid C string; fd closed at once.
                unsafe {
                    let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                    libc::close(fd);
                }
            }
            println!("{}", start.elapsed().as_nanos() as u64 / n.max(1));
        }
        "open-rate" => {
            // Benchmark: open+close of PATH at RATE per second for SECS seconds, paced
            // every half millisecond; prints `opens=N ns=ELAPSED` (a starved process
            // makes fewer than RATE x SECS).
            let rate: u64 = arg(1).parse().expect("rate");
            let secs: f64 = arg(2).parse().expect("seconds");
            let path = cstr(arg(3));
            let start = Instant::now();
            let end = Duration::from_secs_f64(secs);
            let mut done: u64 = 0;
            loop {
                let elapsed = start.elapsed();
                if elapsed >= end {
                    break;
                }
                let due = (rate as u128 * elapsed.as_nanos() / 1_000_000_000) as u64;
                while done < due {
                    // SAFETY: valid C string; fd closed at once.
                    unsafe { libc::close(libc::open(path.as_ptr(), libc::O_RDONLY)) };
                    done += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            println!("opens={done} ns={}", start.elapsed().as_nanos());
        }
        "time" => {
            // Runs ARGS[1..] (stdout discarded), prints its wall time in ns; exits with
            // its status.
            let start = Instant::now();
            let status = std::process::Command::new(arg(1))
                .args(&args[2..])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("{}: {e}", arg(1)));
            println!("{}", start.elapsed().as_nanos());
            std::process::exit(status.code().unwrap_or(1));
        }
        "loop" => {
            // Benchmark: N iterations of one operation; prints ns per iteration.
            let n: u64 = arg(2).parse().expect("count");
            let start = Instant::now();
            match arg(1) {
                "open" => {
                    let path = cstr("/etc/hostname");
                    for _ in 0..n {
                        // SAFETY: valid C string; fd closed at once.
                        unsafe { libc::close(libc::open(path.as_ptr(), libc::O_RDONLY)) };
                    }
                }
                "stat" => {
                    let path = cstr("/etc/hostname");
                    // SAFETY: all-zero is a valid stat buffer.
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    for _ in 0..n {
                        // SAFETY: valid C string and buffer.
                        unsafe { libc::stat(path.as_ptr(), &mut st) };
                    }
                }
                "connect" => {
                    use std::os::fd::AsRawFd;
                    let addr: SocketAddr = arg(3).parse().expect("listener address");
                    // Close with RST (SO_LINGER 0): no TIME_WAIT piles up, so the loop
                    // measures connect, not the search for a free ephemeral port.
                    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                    for _ in 0..n {
                        if let Ok(stream) = TcpStream::connect(addr) {
                            // SAFETY: valid socket and option buffer.
                            unsafe {
                                libc::setsockopt(
                                    stream.as_raw_fd(),
                                    libc::SOL_SOCKET,
                                    libc::SO_LINGER,
                                    (&linger as *const libc::linger).cast(),
                                    size_of::<libc::linger>() as u32,
                                )
                            };
                        }
                    }
                }
                "forkexec" => {
                    for _ in 0..n {
                        let _ = std::process::Command::new("/bin/true").status();
                    }
                }
                other => panic!("unknown loop {other}"),
            }
            println!("{}", start.elapsed().as_nanos() as u64 / n.max(1));
        }
        "listen" => {
            // Accepts and closes connections on a loopback port until killed.
            use std::os::fd::AsRawFd;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
            // A deep backlog: a fast client must not outrun accept and wait for SYN
            // retransmits (std listens with 128).
            // SAFETY: listen(2) again on our own socket only changes its backlog.
            unsafe { libc::listen(listener.as_raw_fd(), 4096) };
            println!("{}", listener.local_addr().expect("address").port());
            std::io::stdout().flush().ok();
            for stream in listener.incoming() {
                drop(stream);
            }
        }
        "open-repeat" => {
            // Opens PATH every 10 ms for MS milliseconds.
            let until = Instant::now() + Duration::from_millis(arg(2).parse().expect("ms"));
            while Instant::now() < until {
                open_read(arg(1));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // window-race PATH TRIES: the tier-2 window. Each try forks a child whose second
        // thread spins on sendfile() from the descriptor number the child's next open will
        // get, into a pipe the parent holds, while the child opens PATH. If the open is
        // refused, or the child is killed before the thread reads, the pipe stays empty.
        "window-race" => {
            let tries: u32 = arg(2).parse().expect("tries");
            let (mut leaks, mut bytes) = (0u32, 0usize);
            for _ in 0..tries {
                let got = window_race_once(arg(1));
                leaks += u32::from(got > 0);
                bytes += got;
            }
            println!("tries={tries} leaks={leaks} bytes={bytes}");
        }
        // The pid of the watchdog of the monitor PID, found by its command line.
        "watchdog-of" => {
            let needle = format!("watchdog\0--monitor-pid\0{}\0", arg(1));
            for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                if cmdline.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    println!("{}", entry.file_name().to_string_lossy());
                }
            }
        }
        // Sleeps N seconds holding no capability at all (a root process that gave them up).
        "capless-sleep" => {
            #[repr(C)]
            struct Header {
                version: u32,
                pid: i32,
            }
            let header = Header { version: 0x2008_0522, pid: 0 };
            let data = [0u32; 6];
            // SAFETY: capset with a v3 header and two zeroed data words.
            check(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) }, "capset");
            println!("capless");
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_secs(arg(1).parse().expect("seconds")));
        }
        "sleep" => std::thread::sleep(Duration::from_secs(arg(1).parse().expect("seconds"))),
        "zombie-child" => {
            // A child that exits at once and is never waited for; prints its pid once it
            // is a zombie, then sleeps SECS seconds.
            // SAFETY: the child only calls _exit.
            let child = check(unsafe { libc::fork() } as _, "fork");
            if child == 0 {
                unsafe { libc::_exit(0) };
            }
            // SAFETY: WNOWAIT leaves the zombie in place.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            check(
                unsafe { libc::waitid(libc::P_PID, child as _, &mut info, libc::WEXITED | libc::WNOWAIT) } as _,
                "waitid",
            );
            println!("zombie={child}");
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_secs(arg(1).parse().expect("seconds")));
        }
        "poll-open" => {
            // Tries to open PATH every 20 ms for SECS seconds; prints each change of
            // outcome (`ok`, `errno=N`) as it happens.
            let until = Instant::now() + Duration::from_secs(arg(2).parse().expect("seconds"));
            let mut last = String::new();
            while Instant::now() < until {
                let outcome = match std::fs::File::open(arg(1)) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("errno={}", e.raw_os_error().unwrap_or(0)),
                };
                if outcome != last {
                    println!("{outcome}");
                    let _ = std::io::stdout().flush();
                    last = outcome;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        "tree" => {
            // A child and a grandchild, all three sleeping SECS; prints `pids=A,B,C`.
            let secs: u32 = arg(1).parse().expect("seconds");
            let mut fds = [0; 2];
            // SAFETY: fds is a valid array of two.
            check(unsafe { libc::pipe(fds.as_mut_ptr()) } as _, "pipe");
            // SAFETY: the children only make async-signal-safe calls.
            unsafe {
                if libc::fork() == 0 {
                    if libc::fork() == 0 {
                        write_pid_word(fds[1]);
                        libc::sleep(secs);
                        libc::_exit(0);
                    }
                    write_pid_word(fds[1]);
                    libc::sleep(secs);
                    libc::_exit(0);
                }
                libc::close(fds[1]);
            }
            // SAFETY: the read end is ours.
            let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
            let mut text = String::new();
            let mut buf = [0u8; 64];
            while text.split_whitespace().count() < 2 {
                let n = reader.read(&mut buf).expect("read pids");
                if n == 0 {
                    break;
                }
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            let pids: Vec<&str> = text.split_whitespace().collect();
            println!("pids={},{}", std::process::id(), pids.join(","));
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_secs(secs as u64));
        }
        other => {
            eprintln!("probe: unknown command {other}");
            std::process::exit(2);
        }
    }
}

/// Double fork with setsid: the grandchild is reparented away from the session's
/// tree and leads a new session, then opens `path`. Prints the grandchild's pid; the
/// first process waits (on a pipe) until the grandchild is done.
fn daemonize(path: &str) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) } as _, "pipe");
    let (read_end, write_end) = (fds[0], fds[1]);
    // SAFETY: the child only calls async-signal-safe functions until it exits or opens.
    let middle = check(unsafe { libc::fork() } as _, "fork");
    if middle == 0 {
        unsafe {
            libc::setsid();
            let grandchild = libc::fork();
            if grandchild != 0 {
                libc::_exit(0); // orphan the grandchild
            }
            let middle_pid = libc::getppid();
            // Wait until reparented (to init or a subreaper).
            for _ in 0..500 {
                if libc::getppid() != middle_pid {
                    break;
                }
                libc::usleep(2000);
            }
            open_read(path);
            let mut writer = std::fs::File::from_raw_fd(write_end);
            let _ = writeln!(writer, "{}", libc::getpid());
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end; waiting for our own child.
    unsafe {
        libc::close(write_end);
        libc::waitpid(middle as i32, std::ptr::null_mut(), 0);
    }
    // SAFETY: read_end is ours.
    let mut reader = unsafe { std::fs::File::from_raw_fd(read_end) };
    let mut pid = String::new();
    reader.read_to_string(&mut pid).expect("read grandchild pid");
    println!("grandchild={}", pid.trim());
}

/// Double fork + setsid: leaves a detached process sleeping 30 s, prints its pid.
fn spawn_daemon() {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) } as _, "pipe");
    // SAFETY: the children only make async-signal-safe calls before exec/_exit.
    let middle = check(unsafe { libc::fork() } as _, "fork");
    if middle == 0 {
        unsafe {
            libc::setsid();
            if libc::fork() != 0 {
                libc::_exit(0);
            }
            let pid = libc::getpid();
            let mut digits = [0u8; 16];
            let text = format_pid(pid as u32, &mut digits);
            libc::write(fds[1], text.as_ptr().cast(), text.len());
            libc::close(fds[1]);
            libc::close(fds[0]);
            libc::sleep(30);
            libc::_exit(0);
        }
    }
    // SAFETY: our own fds and child.
    unsafe {
        libc::close(fds[1]);
        libc::waitpid(middle as i32, std::ptr::null_mut(), 0);
    }
    // SAFETY: read_end is ours.
    let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut pid = String::new();
    reader.read_to_string(&mut pid).expect("read daemon pid");
    println!("daemon={}", pid.trim());
}

/// Writes "PID " to `fd` in one write (atomic on a pipe): async-signal-safe.
fn write_pid_word(fd: i32) {
    let mut buf = [0u8; 16];
    // SAFETY: getpid has no preconditions.
    let pid = format_pid(unsafe { libc::getpid() } as u32, &mut buf);
    let mut word = [b' '; 17];
    word[..pid.len()].copy_from_slice(pid);
    // SAFETY: writing a local buffer to a pipe.
    unsafe { libc::write(fd, word.as_ptr().cast(), pid.len() + 1) };
}

fn format_pid(mut pid: u32, buf: &mut [u8; 16]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    &buf[at..]
}

/// connect() through io_uring (IORING_OP_CONNECT): no connect syscall is made.
fn uring_connect(addr: SocketAddr) {
    use std::os::fd::AsRawFd;
    let socket = match addr {
        SocketAddr::V4(_) => socket2_tcp(libc::AF_INET),
        SocketAddr::V6(_) => socket2_tcp(libc::AF_INET6),
    };
    let (storage, len) = sockaddr(addr);
    let mut ring = io_uring::IoUring::new(4).expect("io_uring (kernel support needed)");
    let entry = io_uring::opcode::Connect::new(
        io_uring::types::Fd(socket.as_raw_fd()),
        (&storage as *const libc::sockaddr_storage).cast(),
        len,
    )
    .build()
    .user_data(1);
    // SAFETY: the address and socket outlive the submission (we wait for it).
    unsafe { ring.submission().push(&entry).expect("submission queue") };
    ring.submit_and_wait(1).expect("submit");
    let result = ring.completion().next().expect("completion").result();
    if result == 0 { println!("connected") } else { println!("error={}", -result) }
}

/// openat() through io_uring (IORING_OP_OPENAT), then read and print the file.
fn uring_open(path: &str) {
    let c_path = cstr(path);
    let mut ring = io_uring::IoUring::new(4).expect("io_uring (kernel support needed)");
    let entry =
        io_uring::opcode::OpenAt::new(io_uring::types::Fd(libc::AT_FDCWD), c_path.as_ptr()).build().user_data(1);
    // SAFETY: the path outlives the submission (we wait for it).
    unsafe { ring.submission().push(&entry).expect("submission queue") };
    ring.submit_and_wait(1).expect("submit");
    let fd = ring.completion().next().expect("completion").result();
    if fd < 0 {
        println!("error={}", -fd);
        return;
    }
    // SAFETY: fd is ours.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut data = String::new();
    let _ = file.read_to_string(&mut data);
    print!("{data}");
}

fn socket2_tcp(family: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the fd is owned by the returned value.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_STREAM, 0) } as _, "socket");
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) };
            (storage, size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: v6.ip().octets() };
            (storage, size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

/// One attempt for `probe try`: Ok, or the errno it failed with.
fn try_op(attempt: &[String]) -> Result<(), i32> {
    let arg =
        |i: usize| attempt.get(i).map(String::as_str).unwrap_or_else(|| panic!("{}: missing argument {i}", attempt[0]));
    let last_errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let ret = |r: libc::c_long| if r < 0 { Err(last_errno()) } else { Ok(r) };
    // SAFETY (all calls below): valid C strings and buffers, fds we own.
    match attempt[0].as_str() {
        "open" => ret(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_RDONLY) } as _).map(|fd| unsafe {
            libc::close(fd as i32);
        }),
        "write" => {
            ret(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_WRONLY | libc::O_TRUNC) } as _).map(|fd| unsafe {
                libc::close(fd as i32);
            })
        }
        "create" => {
            ret(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600) } as _)
                .map(|fd| unsafe {
                    libc::close(fd as i32);
                })
        }
        "openat" => {
            let dir = ret(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_PATH | libc::O_DIRECTORY) } as _)?;
            let fd = ret(unsafe { libc::openat(dir as i32, cstr(arg(2)).as_ptr(), libc::O_RDONLY) } as _);
            unsafe { libc::close(dir as i32) };
            fd.map(|fd| unsafe {
                libc::close(fd as i32);
            })
        }
        // clone3-into CGROUP_DIR: clone3(CLONE_INTO_CGROUP) of a child that exits at once.
        "clone3-into" => {
            let dir = ret(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_PATH | libc::O_DIRECTORY) } as _)?;
            #[repr(C)]
            #[derive(Default)]
            struct CloneArgs {
                flags: u64,
                pidfd: u64,
                child_tid: u64,
                parent_tid: u64,
                exit_signal: u64,
                stack: u64,
                stack_size: u64,
                tls: u64,
                set_tid: u64,
                set_tid_size: u64,
                cgroup: u64,
            }
            const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
            let args = CloneArgs {
                flags: CLONE_INTO_CGROUP,
                exit_signal: libc::SIGCHLD as u64,
                cgroup: dir as u64,
                ..Default::default()
            };
            let pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size_of::<CloneArgs>()) };
            if pid == 0 {
                unsafe { libc::_exit(0) };
            }
            let result = ret(pid);
            if let Ok(child) = result {
                unsafe { libc::waitpid(child as i32, std::ptr::null_mut(), 0) };
            }
            unsafe { libc::close(dir as i32) };
            result.map(drop)
        }
        // finit-module: finit_module(2) of /dev/null (never a module).
        "finit-module" => {
            let fd = ret(unsafe { libc::open(cstr("/dev/null").as_ptr(), libc::O_RDONLY) } as _)?;
            let result = ret(unsafe { libc::syscall(libc::SYS_finit_module, fd as i32, cstr("").as_ptr(), 0) });
            unsafe { libc::close(fd as i32) };
            result.map(drop)
        }
        // ptrace-seize PID: attaches without stopping the process, then detaches.
        "ptrace-seize" => {
            let pid: libc::pid_t = arg(1).parse().expect("pid");
            ret(unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) })?;
            ret(unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) }).map(drop)
        }
        // Limits and scheduling of another process: its open-file limit, its nice value,
        // its CPU affinity (the current one), its I/O priority.
        "prlimit" => {
            let limit = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
            ret(unsafe {
                libc::prlimit(arg(1).parse().expect("pid"), libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut())
            } as _)
            .map(drop)
        }
        "renice" => {
            ret(unsafe { libc::setpriority(libc::PRIO_PROCESS, arg(1).parse().expect("pid"), 19) } as _).map(drop)
        }
        "affinity" => {
            let pid: libc::pid_t = arg(1).parse().expect("pid");
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            ret(unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } as _)?;
            ret(unsafe { libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set) } as _).map(drop)
        }
        "ionice" => {
            const IOPRIO_WHO_PROCESS: libc::c_long = 1;
            const IDLE: libc::c_long = 3 << 13;
            ret(unsafe {
                libc::syscall(
                    libc::SYS_ioprio_set,
                    IOPRIO_WHO_PROCESS,
                    arg(1).parse::<libc::c_long>().expect("pid"),
                    IDLE,
                )
            })
            .map(drop)
        }
        // vm-read PID ADDRESS: process_vm_readv of 8 bytes at ADDRESS (hex) in PID.
        // Types a character into the terminal on stdin (TIOCSTI).
        "tiocsti" => ret(unsafe { libc::ioctl(0, libc::TIOCSTI, b"x".as_ptr()) } as _).map(drop),
        // sigio PID SIG: makes PID the owner of a pipe's I/O signals (F_SETOWN, the
        // signal SIG by F_SETSIG), then writes to the pipe, which sends SIG to PID.
        "sigio" => {
            let mut pipe = [0i32; 2];
            ret(unsafe { libc::pipe(pipe.as_mut_ptr()) } as _)?;
            let reader = pipe[0];
            ret(unsafe { libc::fcntl(reader, libc::F_SETOWN, arg(1).parse::<libc::c_int>().expect("pid")) } as _)?;
            ret(unsafe {
                libc::fcntl(reader, 10 /* F_SETSIG */, arg(2).parse::<libc::c_int>().expect("signal"))
            } as _)?;
            ret(unsafe { libc::fcntl(reader, libc::F_SETFL, libc::O_ASYNC) } as _)?;
            ret(unsafe { libc::write(pipe[1], b"x".as_ptr().cast(), 1) } as _).map(drop)
        }
        "vm-read" => {
            let pid: libc::pid_t = arg(1).parse().expect("pid");
            let address = usize::from_str_radix(arg(2), 16).expect("hex address");
            let mut buf = [0u8; 8];
            let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            let remote = libc::iovec { iov_base: address as *mut libc::c_void, iov_len: buf.len() };
            ret(unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) } as _).map(drop)
        }
        // Opens PATH with O_PATH (not checked: no access to the contents), then its
        // contents through /proc/self/fd/N.
        "proc-fd" => {
            let fd = ret(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_PATH) } as _)?;
            let again = ret(unsafe { libc::open(cstr(&format!("/proc/self/fd/{fd}")).as_ptr(), libc::O_RDONLY) } as _);
            unsafe { libc::close(fd as i32) };
            again.map(|fd| unsafe {
                libc::close(fd as i32);
            })
        }
        "uring-open" => {
            let c_path = cstr(arg(1));
            let mut ring = io_uring::IoUring::new(4).map_err(|e| e.raw_os_error().unwrap_or(0))?;
            let entry = io_uring::opcode::OpenAt::new(io_uring::types::Fd(libc::AT_FDCWD), c_path.as_ptr())
                .build()
                .user_data(1);
            // SAFETY: the path outlives the submission (we wait for it).
            unsafe { ring.submission().push(&entry).expect("submission queue") };
            ring.submit_and_wait(1).map_err(|e| e.raw_os_error().unwrap_or(0))?;
            let fd = ring.completion().next().expect("completion").result();
            if fd < 0 {
                return Err(-fd);
            }
            unsafe { libc::close(fd) };
            Ok(())
        }
        "exec" => {
            // Exec in a child, so that this process can go on and report.
            let child = unsafe { libc::fork() };
            if child == 0 {
                let path = cstr(arg(1));
                let argv = [path.as_ptr(), std::ptr::null()];
                unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
                let errno = last_errno();
                unsafe { libc::_exit(200 + errno.min(55)) };
            }
            let mut status = 0;
            unsafe { libc::waitpid(child, &mut status, 0) };
            match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
                (true, code) if code >= 200 => Err(code - 200),
                (true, _) => Ok(()),
                _ => Err(-libc::WTERMSIG(status)), // killed: reported as errno=-SIGNAL
            }
        }
        "connect" => TcpStream::connect_timeout(&arg(1).parse().expect("socket address"), Duration::from_secs(2))
            .map(drop)
            .map_err(|e| e.raw_os_error().unwrap_or(0)),
        "bind" => std::net::TcpListener::bind(arg(1)).map(drop).map_err(|e| e.raw_os_error().unwrap_or(0)),
        "unlink" => ret(unsafe { libc::unlink(cstr(arg(1)).as_ptr()) } as _).map(drop),
        "rename" => ret(unsafe { libc::rename(cstr(arg(1)).as_ptr(), cstr(arg(2)).as_ptr()) } as _).map(drop),
        "truncate" => ret(unsafe { libc::truncate(cstr(arg(1)).as_ptr(), 0) } as _).map(drop),
        "link" => ret(unsafe { libc::link(cstr(arg(1)).as_ptr(), cstr(arg(2)).as_ptr()) } as _).map(drop),
        "chmod" => ret(unsafe { libc::chmod(cstr(arg(1)).as_ptr(), 0o777) } as _).map(drop),
        // Maps the start of a file executable (as the loader maps a library), or
        // readable and then executable with mprotect.
        "map-exec" | "mprotect-exec" => {
            let fd = ret(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_RDONLY) } as _)? as i32;
            let prot = if attempt[0] == "map-exec" { libc::PROT_READ | libc::PROT_EXEC } else { libc::PROT_READ };
            let at = unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, libc::MAP_PRIVATE, fd, 0) };
            unsafe { libc::close(fd) };
            if at == libc::MAP_FAILED {
                return Err(last_errno());
            }
            let made = if attempt[0] == "map-exec" {
                Ok(0)
            } else {
                ret(unsafe { libc::mprotect(at, 4096, libc::PROT_READ | libc::PROT_EXEC) } as _)
            };
            unsafe { libc::munmap(at, 4096) };
            made.map(drop)
        }
        // `socket FAMILY TYPE PROTOCOL`, by number.
        "socket" => {
            let number = |i| arg(i).parse::<i32>().expect("a number");
            ret(unsafe { libc::socket(number(1), number(2), number(3)) } as _).map(|fd| unsafe {
                libc::close(fd as i32);
            })
        }
        // The monitor is the session's first process's parent.
        "kill-parent" => ret(unsafe { libc::kill(libc::getppid(), libc::SIGKILL) } as _).map(drop),
        "kill" => ret(unsafe { libc::kill(arg(1).parse().expect("pid"), libc::SIGKILL) } as _).map(drop),
        "ptrace-parent" => {
            let r = ret(unsafe { libc::ptrace(libc::PTRACE_SEIZE, libc::getppid(), 0, 0) });
            if r.is_ok() {
                unsafe { libc::ptrace(libc::PTRACE_DETACH, libc::getppid(), 0, 0) };
            }
            r.map(drop)
        }
        "bpf-map" => {
            // BPF_MAP_CREATE of a one-entry array: the smallest bpf() that loads anything.
            let mut attr = [0u32; 32];
            attr[0] = 2; // BPF_MAP_TYPE_ARRAY
            attr[1] = 4; // key size
            attr[2] = 4; // value size
            attr[3] = 1; // max entries
            let fd = ret(unsafe {
                libc::syscall(libc::SYS_bpf, 0 /* BPF_MAP_CREATE */, attr.as_ptr(), 128)
            })?;
            unsafe { libc::close(fd as i32) };
            Ok(())
        }
        "mount-tmpfs" => {
            let r = ret(unsafe {
                libc::mount(cstr("none").as_ptr(), cstr(arg(1)).as_ptr(), cstr("tmpfs").as_ptr(), 0, std::ptr::null())
            } as _);
            if r.is_ok() {
                unsafe { libc::umount(cstr(arg(1)).as_ptr()) };
            }
            r.map(drop)
        }
        other => panic!("unknown attempt {other}"),
    }
}

/// One try of `window-race`: bytes of `path` that reached the parent's pipe.
fn window_race_once(path: &str) -> usize {
    let mut pipe = [0i32; 2];
    // SAFETY: a two-int array for pipe2.
    check(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } as _, "pipe2");
    let c_path = cstr(path);
    // SAFETY: this process is single-threaded here, so the child may start threads.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // The lowest free descriptor: what the open will get.
        // SAFETY: plain descriptor calls on our own descriptors.
        let guess = unsafe { libc::dup(0) };
        unsafe { libc::close(guess) };
        let writer = pipe[1];
        static SPINNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let reader = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(200);
            while Instant::now() < deadline {
                SPINNING.store(true, std::sync::atomic::Ordering::Release);
                // SAFETY: descriptors by number; a wrong one is EBADF.
                if unsafe { libc::sendfile(writer, guess, std::ptr::null_mut(), 65536) } > 0 {
                    return;
                }
            }
        });
        while !SPINNING.load(std::sync::atomic::Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: a valid C string.
        let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY) };
        if fd >= 0 {
            let _ = reader.join();
        }
        // SAFETY: ends the child at once (no atexit handlers of the parent).
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe {
        libc::close(pipe[1]);
        libc::waitpid(child, &mut status, 0);
    }
    let mut buf = [0u8; 65536];
    // SAFETY: reading into our buffer from our pipe.
    let got = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: our descriptor.
    unsafe { libc::close(pipe[0]) };
    got.max(0) as usize
}
