//! [`Message`]: any `Send` value, type-erased, stored inline when it is small.
//!
//! Values up to 32 bytes (aligned to at most 8) live inside the message itself, so sending a
//! number, a pid, a `String` or a small struct allocates nothing; bigger values are boxed.
//! Handlers take the value back out with [`Message::downcast`], by value.
//!
//! # Layout
//! A message is 40 bytes: a pointer to a per-type table ([`VTable`]) and 32 bytes of storage,
//! holding either the value or a `Box` of it. Whether a type is stored inline depends on the
//! type alone, so a downcast to `T` knows statically where to look (no "is it boxed?" branch),
//! and dropping a message whose type needs no drop (a `u64`) does nothing at all. (It replaced
//! `smallbox::SmallBox<dyn Any + Send>`: 48 bytes, a branch on every access, a virtual call
//! on every type check and on every drop.)
#![allow(unsafe_code, reason = "the type-erased message's inline storage")]

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::ptr;

/// Storage of a message: room for an inline value, or for the pointer of a boxed one.
type Storage = MaybeUninit<[usize; 4]>;

/// True when a `T` is stored inline (it fits the storage's size and alignment).
const fn fits<T>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<Storage>() && mem::align_of::<T>() <= mem::align_of::<Storage>()
}

/// What a message knows about the type it holds.
struct VTable {
    /// Held, not called: a table's address is not unique (see [`Message::is`]), and comparing
    /// two ids is a few instructions where a call through `fn() -> TypeId` was dozens.
    type_id: TypeId,
    /// Drops the value in the storage (inline) or the box it points to. `None` when dropping
    /// the value does nothing.
    drop: Option<unsafe fn(*mut Storage)>,
    boxed: bool,
}

struct VTableOf<T>(PhantomData<T>);

impl<T: Any> VTableOf<T> {
    const VTABLE: VTable = VTable {
        type_id: TypeId::of::<T>(),
        drop: if !fits::<T>() {
            Some(drop_boxed::<T> as unsafe fn(*mut Storage))
        } else if mem::needs_drop::<T>() {
            Some(drop_inline::<T> as unsafe fn(*mut Storage))
        } else {
            None
        },
        boxed: !fits::<T>(),
    };
}

/// # Safety
/// `storage` holds an initialized inline `T`, which is not used again.
unsafe fn drop_inline<T>(storage: *mut Storage) {
    // SAFETY: the caller's contract; an inline `T` sits at the start of the storage, aligned.
    unsafe { ptr::drop_in_place(storage.cast::<T>()) }
}

/// # Safety
/// `storage` holds the pointer of a live `Box<T>`, which is not used again.
unsafe fn drop_boxed<T>(storage: *mut Storage) {
    // SAFETY: the caller's contract: the pointer came from `Box::into_raw` and is owned here.
    drop(unsafe { Box::from_raw(storage.cast::<*mut T>().read()) })
}

/// A message: any `Send + 'static` value, type-erased.
///
/// INVARIANT: `vtable` is `VTableOf::<T>::VTABLE` for the type `T` of the value the message
/// owns (a promoted constant: equal addresses mean the same `T`, different addresses may still
/// be the same `T`); if `fits::<T>()` the value is initialized at the start of `storage`,
/// otherwise `storage` starts with the pointer of a `Box<T>` that the message owns.
#[repr(C)]
pub struct Message {
    vtable: &'static VTable,
    storage: Storage,
    /// `Send` (the value is) but not `Sync` (the value need not be), like a
    /// `Box<dyn Any + Send>`.
    _value: PhantomData<Box<dyn Any + Send>>,
}

impl Message {
    /// Wraps a value (a `Message` is passed through, never wrapped twice).
    #[inline]
    pub fn new<T: Any + Send>(value: T) -> Message {
        // A constant after monomorphization: the branch vanishes for every T but Message.
        if TypeId::of::<T>() == TypeId::of::<Message>() {
            let mut value = Some(value);
            if let Some(m) = (&mut value as &mut dyn Any).downcast_mut::<Option<Message>>().and_then(Option::take) {
                return m;
            }
            unreachable!("T is Message");
        }
        let mut storage = Storage::uninit();
        if fits::<T>() {
            // SAFETY: a `T` fits the storage in size and alignment (`fits`); the storage is
            // uninitialized and now owns the value.
            unsafe { storage.as_mut_ptr().cast::<T>().write(value) };
        } else {
            let boxed = Box::into_raw(Box::new(value));
            // SAFETY: a pointer fits the storage; the storage now owns the box.
            unsafe { storage.as_mut_ptr().cast::<*mut T>().write(boxed) };
        }
        Message { vtable: &VTableOf::<T>::VTABLE, storage, _value: PhantomData }
    }

    /// Writes `Message::new(value)` into `dst`, field by field, in place. The same-shard send
    /// builds its message straight into the receiver's lane this way: a message assembled on
    /// the stack with 8-byte stores and then copied with 16-byte loads stalls the copy on
    /// store-to-load forwarding, which cost more than everything else the send does.
    ///
    /// # Safety
    /// `dst` is valid for writes of a `Message` and properly aligned; whatever it holds is
    /// overwritten without being dropped.
    #[inline(always)]
    pub(crate) unsafe fn write_new<T: Any + Send>(dst: *mut Message, value: T) {
        if TypeId::of::<T>() == TypeId::of::<Message>() {
            // SAFETY: the caller's contract (a plain write of a whole message).
            unsafe { dst.write(Message::new(value)) };
            return;
        }
        // SAFETY: the caller's contract: `dst` is valid and aligned, so are its fields. The
        // table is `T`'s and the storage gets the value (inline, it fits) or its box, as
        // `new` does: the INVARIANT holds once both writes are done (`_value` has no bytes).
        unsafe {
            (&raw mut (*dst).vtable).write(&VTableOf::<T>::VTABLE);
            let storage = &raw mut (*dst).storage;
            if fits::<T>() {
                storage.cast::<T>().write(value);
            } else {
                storage.cast::<*mut T>().write(Box::into_raw(Box::new(value)));
            }
        }
    }

    /// The value, if it is a `T`; the message back otherwise (to try another type).
    #[inline]
    pub fn downcast<T: Any>(self) -> Result<T, Message> {
        if !self.is::<T>() {
            return Err(self);
        }
        // SAFETY: the value is a `T` (checked just above).
        Ok(unsafe { self.take_unchecked() })
    }

    /// The value, moved out; the message is consumed without dropping it.
    ///
    /// # Safety
    /// The value is a `T` (`self.is::<T>()`).
    #[inline(always)]
    unsafe fn take_unchecked<T: Any>(self) -> T {
        // Ownership of the value moves out: the message must not drop it.
        let this = ManuallyDrop::new(self);
        let storage = this.storage.as_ptr();
        if fits::<T>() {
            // SAFETY: the value is a `T` (the caller's contract) stored inline (it fits): read
            // once, and never dropped by the message (`ManuallyDrop`).
            unsafe { storage.cast::<T>().read() }
        } else {
            // SAFETY: the value is a `T` (the caller's contract), boxed (it does not fit): the
            // box is taken back once, and never dropped by the message (`ManuallyDrop`).
            *unsafe { Box::from_raw(storage.cast::<*mut T>().read()) }
        }
    }

    /// The value and what `f` made of it, if it is a `T` and `f` made something; the message
    /// back otherwise. A look and then a take with one check of the type (a `downcast_ref`
    /// and then a `downcast` check it twice).
    #[inline(always)]
    #[cfg_attr(not(feature = "web"), allow(dead_code, reason = "the web workers are its only user"))]
    pub(crate) fn take_if<T: Any, R>(self, f: impl FnOnce(&T) -> Option<R>) -> Result<(T, R), Message> {
        let Some(made) = self.downcast_ref::<T>().and_then(f) else { return Err(self) };
        // SAFETY: the value is a `T` (`downcast_ref` found one).
        Ok((unsafe { self.take_unchecked() }, made))
    }

    /// A reference to the value, if it is a `T`.
    #[inline]
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        if !self.is::<T>() {
            return None;
        }
        let storage = self.storage.as_ptr();
        // SAFETY: the value is a `T` (checked), inline or behind the box pointer as `fits`
        // says; the reference borrows `self`, which owns the value.
        Some(unsafe { if fits::<T>() { &*storage.cast::<T>() } else { &**storage.cast::<*const T>() } })
    }

    /// A mutable reference to the value, if it is a `T`.
    #[inline]
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        if !self.is::<T>() {
            return None;
        }
        let storage = self.storage.as_mut_ptr();
        // SAFETY: as in `downcast_ref`, with the exclusive borrow of `self`.
        Some(unsafe { if fits::<T>() { &mut *storage.cast::<T>() } else { &mut **storage.cast::<*mut T>() } })
    }

    /// True if the value is a `T`.
    #[inline]
    pub fn is<T: Any>(&self) -> bool {
        // The same table is the same type (tables of different types differ in `type_id`). A
        // different table may still be the same type: a constant's address is not unique, each
        // crate and codegen unit that names it may have its own copy (a `WebRequest` made by
        // the web layer and taken apart in the user's `WebWorker` never matched by address),
        // so the ids the tables hold decide.
        ptr::eq(self.vtable, &VTableOf::<T>::VTABLE) || self.vtable.type_id == TypeId::of::<T>()
    }

    /// True if the value was too big to be stored inline (it was boxed).
    pub fn is_boxed(&self) -> bool {
        self.vtable.boxed
    }
}

impl Drop for Message {
    #[inline]
    fn drop(&mut self) {
        if let Some(drop) = self.vtable.drop {
            // SAFETY: `drop` is the vtable's, for the type the storage holds (INVARIANT), and
            // the value is dropped exactly once: here, as the message ends.
            unsafe { drop(&raw mut self.storage) }
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Message(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn message_small_value_is_inline_and_downcasts_by_value() {
        let m = Message::new(42u64);
        assert!(!m.is_boxed());
        assert!(m.is::<u64>());
        assert!(!m.is::<i64>(), "same size, another type");
        assert!(!m.is::<()>(), "another size");
        let m = m.downcast::<u32>().unwrap_err();
        assert_eq!(m.downcast::<u64>().unwrap(), 42);
    }

    #[test]
    fn message_big_value_is_boxed_and_dropped_once() {
        let counter = Arc::new(());
        let m = Message::new((counter.clone(), [0u64; 16]));
        assert!(m.is_boxed());
        assert_eq!(Arc::strong_count(&counter), 2);
        drop(m);
        assert_eq!(Arc::strong_count(&counter), 1);
    }

    #[test]
    fn message_of_message_is_not_wrapped_twice() {
        let m = Message::new(Message::new(String::from("hi")));
        assert_eq!(m.downcast::<String>().unwrap(), "hi");
    }

    #[test]
    fn message_inline_value_with_drop_is_dropped_once_or_moved_out() {
        let counter = Arc::new(());
        let m = Message::new(counter.clone());
        assert!(!m.is_boxed());
        assert_eq!(Arc::strong_count(&counter), 2);
        drop(m);
        assert_eq!(Arc::strong_count(&counter), 1);
        let m = Message::new(counter.clone());
        let back = m.downcast::<Arc<()>>().unwrap();
        assert_eq!(Arc::strong_count(&counter), 2);
        drop(back);
        assert_eq!(Arc::strong_count(&counter), 1);
    }

    #[test]
    fn message_refs_and_mut_refs_reach_inline_and_boxed_values() {
        let mut small = Message::new(String::from("a"));
        small.downcast_mut::<String>().unwrap().push('b');
        assert_eq!(small.downcast_ref::<String>().unwrap(), "ab");
        assert!(small.downcast_ref::<u64>().is_none());
        let mut big = Message::new([7u64; 8]);
        assert!(big.is_boxed());
        big.downcast_mut::<[u64; 8]>().unwrap()[0] = 1;
        assert_eq!(big.downcast_ref::<[u64; 8]>().unwrap()[..2], [1, 7]);
        assert_eq!(big.downcast::<[u64; 8]>().unwrap()[7], 7);
    }

    #[test]
    fn message_take_if_takes_only_a_t_that_f_accepts_and_drops_once() {
        let counter = Arc::new(());
        for boxed in [false, true] {
            let make =
                || if boxed { Message::new((counter.clone(), [7u64; 16])) } else { Message::new(counter.clone()) };
            let strong = |m: &Message| {
                if boxed {
                    Arc::strong_count(&m.downcast_ref::<(Arc<()>, [u64; 16])>().unwrap().0)
                } else {
                    Arc::strong_count(m.downcast_ref::<Arc<()>>().unwrap())
                }
            };
            // Another type: `f` is not called, the message comes back whole.
            let m = make();
            let m = m.take_if(|_: &String| -> Option<()> { unreachable!("not a String") }).unwrap_err();
            assert_eq!(strong(&m), 2);
            // `f` declines: the message comes back whole.
            let m = if boxed {
                m.take_if(|v: &(Arc<()>, [u64; 16])| (v.1[0] == 8).then_some(())).unwrap_err()
            } else {
                m.take_if(|v: &Arc<()>| (Arc::strong_count(v) == 3).then_some(())).unwrap_err()
            };
            assert_eq!(m.is_boxed(), boxed);
            drop(m);
            assert_eq!(Arc::strong_count(&counter), 1, "dropped once");
            // `f` accepts: the value moves out with what `f` made, and is dropped once, by its taker.
            let m = make();
            if boxed {
                let (v, made) = m.take_if(|v: &(Arc<()>, [u64; 16])| Some(v.1[3] + 1)).unwrap();
                assert_eq!((made, v.1[15], Arc::strong_count(&v.0)), (8, 7, 2));
            } else {
                let (v, made) = m.take_if(|v: &Arc<()>| Some(Arc::strong_count(v))).unwrap();
                assert_eq!((made, Arc::strong_count(&v)), (2, 2));
            }
            assert_eq!(Arc::strong_count(&counter), 1, "taken and dropped once");
        }
    }

    #[test]
    fn message_boundary_sizes_and_alignments() {
        #[derive(Debug, PartialEq)]
        #[repr(align(16))]
        struct Aligned(u8);
        let m = Message::new([1u64; 4]);
        assert!(!m.is_boxed(), "32 bytes fit");
        assert_eq!(m.downcast::<[u64; 4]>().unwrap(), [1; 4]);
        let m = Message::new([1u8; 33]);
        assert!(m.is_boxed(), "33 bytes do not");
        let m = Message::new(Aligned(3));
        assert!(m.is_boxed(), "an alignment over 8 is boxed");
        assert_eq!(m.downcast::<Aligned>().unwrap(), Aligned(3));
        let m = Message::new(());
        assert!(!m.is_boxed());
        assert!(m.downcast::<()>().is_ok());
    }

    #[test]
    fn message_is_send_and_40_bytes() {
        fn assert_send<T: Send>() {}
        assert_send::<Message>();
        assert_eq!(mem::size_of::<Message>(), 40);
    }
}
