// The emulator's store keeps the newest store::max_kept conversations and workflow runs.
#include "gateway/emulator/apps.hpp"
#include "gateway/emulator/store.hpp"

#include <gtest/gtest.h>

namespace gw::emulator {
namespace {

TEST(EmulatorStore, KeepsOnlyTheNewestConversationsAndRuns)
{
    store st(builtin_apps(), [] { return std::int64_t{1'700'000'000}; }, 7);
    const auto& app = *st.app_by_key("app-emuchat00000000000000001");
    const auto& user = st.end_user(app, "bench");
    auto& first = st.create_conversation(app, user, {}, false);
    const std::string first_id = first.id;
    message_rec m;
    m.id = "first-message";
    st.add_message(first, m);
    workflow_run_rec run;
    run.id = "first-run";
    st.add_run(run);
    for (std::size_t i = 1; i < store::max_kept; ++i) {
        st.create_conversation(app, user, {}, false);
        run.id = "run-" + std::to_string(i);
        st.add_run(run);
    }
    ASSERT_NE(st.find_conversation(app, user, first_id), nullptr) << "max_kept conversations fit";
    ASSERT_NE(st.find_run("first-run"), nullptr);

    const std::string newest = st.create_conversation(app, user, {}, false).id;
    run.id = "newest-run";
    st.add_run(run);
    EXPECT_EQ(st.find_conversation(app, user, first_id), nullptr) << "the oldest is forgotten";
    EXPECT_EQ(st.find_message_by_id("first-message"), nullptr) << "with its messages";
    EXPECT_EQ(st.find_run("first-run"), nullptr);
    EXPECT_NE(st.find_conversation(app, user, newest), nullptr);
    EXPECT_NE(st.find_run("newest-run"), nullptr);
    EXPECT_EQ(st.conversations_of(app, user).size(), store::max_kept);
}

} // namespace
} // namespace gw::emulator
