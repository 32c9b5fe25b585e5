//! The process's global allocator: the system allocator (glibc) until a verb that runs the
//! ingest pipeline calls [`use_mimalloc`], mimalloc for every allocation after it.
//!
//! Why two. The ingest pipeline allocates per line in three threads, and glibc's malloc was
//! ~15 % of its CPU; mimalloc took ingest of 1 M lines from 6.4 s to 5.1 s (BENCHMARKS.md
//! "What limits the misses"). A query process (`who`, `search`) lives a few milliseconds,
//! and there mimalloc's arena set-up, its fresh pages and its teardown at exit cost ~1 ms of a
//! 5–6 ms `who` (BENCHMARKS.md "NAT (issue 12), 2026-12-07 — the system allocator for
//! queries"), which glibc's heap, grown by `brk` as needed, does not.
//!
//! How a block finds its way back. Which allocator made a block is not remembered per
//! block: mimalloc knows its own memory (`mi_is_in_heap_region`, a page-map lookup), and a
//! block it does not know is the system's. Until mimalloc is first used, every block is the
//! system's and the lookup is skipped. Blocks made before the switch (the arguments, clap's
//! parse) stay the system's for their whole life, `realloc` included.
//!
//! mimalloc's own set-up at load time (a constructor that reads ~40 environment variables,
//! probes the CPU with `cpuid` — a trap to the hypervisor in a VM — and maps its page map,
//! ~0.14 ms of every process, and its teardown at exit) is compiled out
//! (`MI_PRIM_HAS_PROCESS_ATTACH`, set for the C build in `.cargo/config.toml`) and done by
//! [`use_mimalloc`] instead.
//!
//! Why not a crate: no maintained crate switches a Rust global allocator at run time (the
//! wrappers on crates.io count or cap one allocator). This file is the one place in the
//! workspace where unsafe code is allowed, and it holds nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libmimalloc_sys as mi;

/// New blocks come from mimalloc (set once, never cleared).
static MIMALLOC: AtomicBool = AtomicBool::new(false);

/// mimalloc was set up (by the first [`use_mimalloc`]).
static SET_UP: AtomicBool = AtomicBool::new(false);

/// From now on, new blocks come from mimalloc: for the verbs that run the ingest pipeline
/// (many threads, an allocation or more per line), called before they start their threads.
pub fn use_mimalloc() {
    if SET_UP.swap(true, Ordering::AcqRel) {
        return;
    }
    // mimalloc is built without its load-time constructor (`.cargo/config.toml`): a process
    // that never uses it pays nothing for it. What the constructor would have run at load
    // is run here, once, on the thread that switches (the main one, before the verb starts
    // its threads), before any block is asked of mimalloc. Not `mi_process_init` alone: it
    // leaves mimalloc believing the process is still loading (no thread-exit hooks, no
    // options read), and ingest then ran 40 % slower in 60 % more memory.
    // SAFETY: the function takes no arguments; it is called once (`SET_UP`), as the loader
    // would have, before any block is asked of mimalloc (`MIMALLOC` is still false).
    unsafe { _mi_auto_process_init() };
    MIMALLOC.store(true, Ordering::Release);
}

unsafe extern "C" {
    /// mimalloc's process set-up as its load-time constructor runs it (src/init.c): process
    /// state, options, the main thread's heap, thread-exit hooks. Internal to the C library
    /// (the version is the one Cargo.lock pins); `heap`'s test exercises it.
    fn _mi_auto_process_init();
}

/// Whether [`use_mimalloc`] was called.
#[inline(always)]
pub fn uses_mimalloc() -> bool {
    MIMALLOC.load(Ordering::Acquire)
}

/// The global allocator (see the module's text): `#[global_allocator] static A: heap::Heap = heap::Heap;`.
pub struct Heap;

/// The span of addresses the system allocator's blocks were handed out in: every block
/// `System` made lies in `[SYSTEM_LO, SYSTEM_HI)`. Widened, never narrowed, and only when a
/// new block falls outside (two loads and compares for the others).
static SYSTEM_LO: AtomicUsize = AtomicUsize::new(usize::MAX);
static SYSTEM_HI: AtomicUsize = AtomicUsize::new(0);

/// Records a block `System` just made. Relaxed is enough: a block reaches the thread that
/// frees it through some synchronisation, which makes this earlier write visible there.
#[inline(always)]
fn note_system_block(p: *mut u8, size: usize) -> *mut u8 {
    if !p.is_null() {
        let lo = p as usize;
        let hi = lo.saturating_add(size.max(1));
        if lo < SYSTEM_LO.load(Ordering::Relaxed) {
            SYSTEM_LO.fetch_min(lo, Ordering::Relaxed);
        }
        if hi > SYSTEM_HI.load(Ordering::Relaxed) {
            SYSTEM_HI.fetch_max(hi, Ordering::Relaxed);
        }
    }
    p
}

/// Whether mimalloc made the block at `p`: never before the switch; after it, a block outside
/// the system's span is mimalloc's without asking (the common case: mimalloc maps arenas of
/// its own, away from glibc's heap), and one inside is looked up in mimalloc's page map (a
/// call per free cost ingest ~3 % of its CPU).
#[inline(always)]
fn mimalloc_owns(p: *mut u8) -> bool {
    if !uses_mimalloc() {
        return false;
    }
    let a = p as usize;
    if a < SYSTEM_LO.load(Ordering::Relaxed) || a >= SYSTEM_HI.load(Ordering::Relaxed) {
        return true;
    }
    // SAFETY: `mi_is_in_heap_region` only looks `p` up in mimalloc's page map (it never
    // dereferences it) and accepts any address.
    unsafe { mi::mi_is_in_heap_region(p as *const c_void) }
}

// SAFETY: every method keeps GlobalAlloc's contract by handing the request to one allocator
// that keeps it (glibc's malloc through `System`, or mimalloc, whose `_aligned` calls honour
// any power-of-two alignment), and a block is freed or resized only by the allocator that
// made it: `mimalloc_owns` is true exactly for mimalloc's blocks (every block `System` makes
// is recorded in its span before it is returned, so a live block outside the span is not
// the system's).
unsafe impl GlobalAlloc for Heap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !uses_mimalloc() {
            // SAFETY: the caller's layout contract passes through unchanged.
            return note_system_block(unsafe { System.alloc(layout) }, layout.size());
        }
        // SAFETY: mimalloc accepts any size and power-of-two alignment (as the `mimalloc`
        // crate's allocator calls it).
        unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !uses_mimalloc() {
            // SAFETY: as in `alloc`.
            return note_system_block(unsafe { System.alloc_zeroed(layout) }, layout.size());
        }
        // SAFETY: as in `alloc`.
        unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mimalloc_owns(ptr) {
            // SAFETY: mimalloc made this block (`mimalloc_owns`); `mi_free` takes any of its
            // blocks, aligned ones included.
            unsafe { mi::mi_free(ptr as *mut c_void) }
        } else {
            // SAFETY: not mimalloc's, so `System` made it with this layout (the caller's contract).
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if mimalloc_owns(ptr) {
            // SAFETY: mimalloc's block, resized keeping its alignment.
            unsafe {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        } else {
            // SAFETY: the system's block, resized by the system allocator (the caller's contract).
            note_system_block(unsafe { System.realloc(ptr, layout, new_size) }, new_size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test binary's own allocator is the system's: these call `Heap` directly.

    #[test]
    fn blocks_go_back_to_the_allocator_that_made_them() {
        let heap = Heap;
        let small = Layout::from_size_align(24, 8).unwrap();
        let big = Layout::from_size_align(1 << 20, 64).unwrap();
        // SAFETY: each block is written within its layout and freed once with that layout.
        unsafe {
            let before = heap.alloc(small);
            assert!(!before.is_null());
            assert!(!mi::mi_is_in_heap_region(before as *const c_void));
            before.write_bytes(7, 24);
            use_mimalloc();
            let after = heap.alloc(small);
            let aligned = heap.alloc(big);
            assert!(mi::mi_is_in_heap_region(after as *const c_void));
            assert!(mi::mi_is_in_heap_region(aligned as *const c_void));
            assert_eq!(aligned as usize % 64, 0);
            // A block of the system's grown after the switch stays the system's.
            let grown = heap.realloc(before, small, 4096);
            assert!(!mi::mi_is_in_heap_region(grown as *const c_void));
            assert_eq!(*grown.add(23), 7);
            let grown_mi = heap.realloc(after, small, 100_000);
            assert!(mi::mi_is_in_heap_region(grown_mi as *const c_void));
            let zeroed = heap.alloc_zeroed(Layout::from_size_align(4096, 4096).unwrap());
            assert_eq!(zeroed as usize % 4096, 0);
            assert!((0..4096).all(|i| *zeroed.add(i) == 0));
            heap.dealloc(zeroed, Layout::from_size_align(4096, 4096).unwrap());
            heap.dealloc(grown, Layout::from_size_align(4096, 8).unwrap());
            heap.dealloc(grown_mi, Layout::from_size_align(100_000, 8).unwrap());
            heap.dealloc(aligned, big);
        }
    }
}
