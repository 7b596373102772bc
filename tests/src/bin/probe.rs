//! An "agent" for the integration tests: each subcommand performs one action the way an
//! agent trying to slip past the monitor might, and prints what the test needs to know.

use std::{
    ffi::CString,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::{fd::FromRawFd, unix::net::UnixStream},
    time::{Duration, Instant},
};

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
        "openat2" => {
            // SAFETY: valid C strings; open_how is zeroed then filled.
            let dir = check(unsafe { libc::open(cstr(arg(1)).as_ptr(), libc::O_PATH | libc::O_DIRECTORY) } as _, "dir");
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = libc::O_RDONLY as u64;
            let fd = check(
                unsafe {
                    libc::syscall(libc::SYS_openat2, dir, cstr(arg(2)).as_ptr(), &how as *const _, size_of::<libc::open_how>())
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
        "daemonize" => daemonize(arg(1)),
        "connect" => {
            let addr: SocketAddr = arg(1).parse().expect("socket address");
            // A blocking connect: the event carries its final result.
            match TcpStream::connect(addr) {
                Ok(_) => println!("connected"),
                Err(e) => println!("error={}", e.raw_os_error().unwrap_or(0)),
            }
        }
        "connect-unix" => match UnixStream::connect(arg(1)) {
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
        "open-repeat" => {
            // Opens PATH every 10 ms for MS milliseconds.
            let until = Instant::now() + Duration::from_millis(arg(2).parse().expect("ms"));
            while Instant::now() < until {
                open_read(arg(1));
                std::thread::sleep(Duration::from_millis(10));
            }
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
