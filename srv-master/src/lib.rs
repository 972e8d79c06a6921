//! srv-master
