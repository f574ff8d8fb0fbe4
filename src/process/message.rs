//! [`Message`]: any `Send` value, type-erased, stored inline when it is small.
//!
//! Values up to 32 bytes (aligned to at most 8) live inside the message itself, so sending a
//! number, a pid, a `String` or a small struct allocates nothing; bigger values are boxed.
//! Handlers take the value back out with [`Message::downcast`], by value.

use std::any::{Any, TypeId};
use std::fmt;

use smallbox::space::S4;
use smallbox::{SmallBox, smallbox};

/// A message: any `Send + 'static` value, type-erased.
pub struct Message(SmallBox<dyn Any + Send, S4>);

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
        Message(smallbox!(value))
    }

    /// The value, if it is a `T`; the message back otherwise (to try another type).
    pub fn downcast<T: Any>(self) -> Result<T, Message> {
        match self.0.downcast::<T>() {
            Ok(b) => Ok(b.into_inner()),
            Err(m) => Err(Message(m)),
        }
    }

    /// A reference to the value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        (*self.0).downcast_ref::<T>()
    }

    /// A mutable reference to the value, if it is a `T`.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        (*self.0).downcast_mut::<T>()
    }

    /// True if the value is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        (*self.0).is::<T>()
    }

    /// True if the value was too big to be stored inline (it was boxed).
    pub fn is_boxed(&self) -> bool {
        self.0.is_heap()
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

    #[test]
    fn message_small_value_is_inline_and_downcasts_by_value() {
        let m = Message::new(42u64);
        assert!(!m.is_boxed());
        assert!(m.is::<u64>());
        let m = m.downcast::<u32>().unwrap_err();
        assert_eq!(m.downcast::<u64>().unwrap(), 42);
    }

    #[test]
    fn message_big_value_is_boxed_and_dropped_once() {
        use std::sync::Arc;
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
}
