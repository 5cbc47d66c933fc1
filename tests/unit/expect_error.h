// EXPECT_TSA_ERROR(statement, {"part", ...}): the statement throws tsa::Error
// and its message contains every part. Error tests check what the message
// says, not just that something threw.
#pragma once

#include <functional>
#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

#include "tsa/error.h"

namespace tsa::test {

// The message of the tsa::Error `f` throws, or "" (and a test failure) if none.
inline std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const tsa::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected tsa::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected tsa::Error, nothing was thrown";
  return "";
}

inline void expect_message_has(const std::string& msg, std::initializer_list<std::string> parts) {
  for (const std::string& p : parts) {
    EXPECT_NE(msg.find(p), std::string::npos) << "message lacks \"" << p << "\": " << msg;
  }
}

}  // namespace tsa::test

#define EXPECT_TSA_ERROR(statement, ...)                                                  \
  ::tsa::test::expect_message_has(::tsa::test::error_message([&] { (void)(statement); }), \
                                  __VA_ARGS__)
